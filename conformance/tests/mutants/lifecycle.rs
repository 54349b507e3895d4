//! Mutants of the lifecycle area.

use std::path::Path;

use async_trait::async_trait;
use uvm_api::{Result, State, StopMode, Uvm};

use crate::Mutant;
use crate::lie::Lie;

/// A graceful stop of a VM whose guest is not running (Created or Paused)
/// waits out the whole timeout before it kills the VM.
struct IdleGracefulStopWaitsTimeout;
#[async_trait]
impl Lie for IdleGracefulStopWaitsTimeout {
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        match (mode, vm.state()) {
            (StopMode::Graceful { timeout }, State::Created | State::Paused) => {
                tokio::time::sleep(timeout).await;
                vm.stop(StopMode::Force).await
            }
            _ => vm.stop(mode).await,
        }
    }
}

/// A save the state refuses still writes a (partial) snapshot at `dest`
/// before giving `InvalidState`.
struct RefusedSaveWritesFile;
#[async_trait]
impl Lie for RefusedSaveWritesFile {
    async fn save(&self, vm: &dyn Uvm, dest: &Path) -> Result<()> {
        if vm.state() != State::Paused {
            let _ = std::fs::write(dest, b"partial snapshot");
        }
        vm.save(dest).await
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "graceful stop of an idle VM waits out its timeout",
            promise: "lifecycle.graceful_stop_not_running_at_once",
            lie: || Box::new(IdleGracefulStopWaitsTimeout),
            caught_by: &["lifecycle_stop_from_created", "lifecycle_stop_while_paused"],
            collateral: &[],
        },
        Mutant {
            name: "a refused save writes a snapshot anyway",
            promise: "lifecycle.save_only_while_paused",
            lie: || Box::new(RefusedSaveWritesFile),
            caught_by: &[
                "lifecycle_save_when_created_invalid",
                "lifecycle_save_when_running_invalid",
                "lifecycle_save_when_stopped_invalid",
            ],
            collateral: &[],
        },
    ]
}
