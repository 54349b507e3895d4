//! Mutants of the truthfulness area.

use std::path::Path;

use async_trait::async_trait;
use uvm_api::{Backend, Capabilities, Error, GuestOs, Result, Uvm, UvmConfig};
use uvm_backend_mock::FakeBackend;

use crate::Mutant;
use crate::lie::Lie;

/// Says it cannot restore, but `restore` reads the file first and fails on
/// what it finds (Io, InvalidArgument) instead of ActionNotSupported.
struct UnclaimedRestoreWrongRefusal;
#[async_trait]
impl Lie for UnclaimedRestoreWrongRefusal {
    fn capabilities(&self, honest: Capabilities) -> Capabilities {
        Capabilities {
            restore: false,
            ..honest
        }
    }
    async fn restore(&self, _backend: &FakeBackend, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        match std::fs::read(snapshot) {
            Err(e) => Err(Error::io(format!("reading {}", snapshot.display()), e)),
            Ok(_) => Err(Error::invalid_argument(
                "snapshot",
                "this backend keeps no snapshots it could read",
            )),
        }
    }
}

/// Claims Windows guests, but creating one fails with a backend error.
struct GuestOsClaimedButRefused;
#[async_trait]
impl Lie for GuestOsClaimedButRefused {
    fn supports_guest_os(&self, honest: bool, os: GuestOs) -> bool {
        honest || os == GuestOs::Windows
    }
    async fn create(&self, backend: &FakeBackend, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        match backend.create(config).await {
            Err(Error::UnsupportedGuestOs { .. }) => Err(Error::backend(std::io::Error::other(
                "no firmware for windows guests",
            ))),
            other => other,
        }
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "unclaimed restore refused with the wrong error",
            promise: "truthfulness.restore_refusal_kind",
            lie: || Box::new(UnclaimedRestoreWrongRefusal),
            caught_by: &[
                "truthfulness_unclaimed_restore_refused",
                "lifecycle_restore_from_snapshot",
            ],
            collateral: &[],
        },
        Mutant {
            name: "claimed guest OS refused at create",
            promise: "truthfulness.claimed_guest_os_creates",
            lie: || Box::new(GuestOsClaimedButRefused),
            caught_by: &["truthfulness_claimed_guest_os_creates"],
            collateral: &[],
        },
    ]
}
