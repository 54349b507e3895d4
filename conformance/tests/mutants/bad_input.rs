//! Mutants of the bad-input area.

use async_trait::async_trait;
use uvm_api::{Backend, Error, Result, Uvm, UvmConfig, config::MAX_CMDLINE_LEN};
use uvm_backend_mock::FakeBackend;

use crate::Mutant;
use crate::lie::Lie;

/// `InvalidConfig` names only the first bad field it found.
struct InvalidConfigListsFirstProblemOnly;
#[async_trait]
impl Lie for InvalidConfigListsFirstProblemOnly {
    async fn create(&self, backend: &FakeBackend, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        match backend.create(config).await {
            Err(Error::InvalidConfig { mut problems }) => {
                problems.truncate(1);
                Err(Error::InvalidConfig { problems })
            }
            other => other,
        }
    }
}

/// A command line over the limit is cut to the limit instead of refused.
struct LongCmdlineTruncated;
#[async_trait]
impl Lie for LongCmdlineTruncated {
    async fn create(&self, backend: &FakeBackend, mut config: UvmConfig) -> Result<Box<dyn Uvm>> {
        config.cmdline.truncate(MAX_CMDLINE_LEN);
        backend.create(config).await
    }
}

/// Boot NICs that repeat an earlier one's MAC are dropped instead of refused.
struct DuplicateBootNicsDeduplicated;
#[async_trait]
impl Lie for DuplicateBootNicsDeduplicated {
    async fn create(&self, backend: &FakeBackend, mut config: UvmConfig) -> Result<Box<dyn Uvm>> {
        let mut seen = Vec::new();
        config.devices.nics.retain(|nic| {
            let fresh = !seen.contains(&nic.mac);
            seen.push(nic.mac);
            fresh
        });
        backend.create(config).await
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "invalid config lists its first problem only",
            promise: "bad_input.config_all_problems_listed",
            lie: || Box::new(InvalidConfigListsFirstProblemOnly),
            caught_by: &["bad_input_invalid_config_lists_every_problem"],
            collateral: &[],
        },
        Mutant {
            name: "long command line truncated",
            promise: "bad_input.config_boot_fields",
            lie: || Box::new(LongCmdlineTruncated),
            caught_by: &["bad_input_invalid_config_refused"],
            collateral: &[],
        },
        Mutant {
            name: "boot NICs of one MAC deduplicated",
            promise: "bad_input.config_boot_devices",
            lie: || Box::new(DuplicateBootNicsDeduplicated),
            caught_by: &["bad_input_invalid_boot_devices_refused"],
            collateral: &[],
        },
    ]
}
