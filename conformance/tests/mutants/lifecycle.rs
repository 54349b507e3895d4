//! Mutants of the lifecycle area.

use std::path::Path;

use async_trait::async_trait;
use uvm_api::{Backend, ConsoleSink, Error, Result, ScsiDisk, State, StopMode, Uvm, UvmConfig};
use uvm_backend_mock::FakeBackend;

use crate::Mutant;
use crate::lie::{Lie, scsi};

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

/// Restore drops the devices of one kind (`field` of the snapshot's saved
/// devices) and brings the rest back: the fake's snapshot, edited.
async fn restore_without(
    backend: &FakeBackend,
    snapshot: &Path,
    field: &str,
) -> Result<Box<dyn Uvm>> {
    let edited = snapshot.with_extension("edited");
    if let Ok(text) = std::fs::read_to_string(snapshot)
        && let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text)
    {
        if let Some(list) = json
            .get_mut("devices")
            .and_then(|d| d.get_mut(field))
            .and_then(serde_json::Value::as_array_mut)
        {
            list.clear();
        }
        if std::fs::write(&edited, json.to_string()).is_ok() {
            return backend.restore(&edited).await;
        }
    }
    backend.restore(snapshot).await
}

/// A restored VM comes back without its disks.
struct RestoreForgetsDisks;
#[async_trait]
impl Lie for RestoreForgetsDisks {
    async fn restore(&self, backend: &FakeBackend, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        restore_without(backend, snapshot, "scsi_disks").await
    }
}

/// A restored VM comes back without its NICs.
struct RestoreForgetsNics;
#[async_trait]
impl Lie for RestoreForgetsNics {
    async fn restore(&self, backend: &FakeBackend, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        restore_without(backend, snapshot, "nics").await
    }
}

/// A disk's path is checked before the lifecycle table: a relative path
/// gives InvalidArgument even where the state forbids adds.
struct ArgumentsCheckedBeforeState;
#[async_trait]
impl Lie for ArgumentsCheckedBeforeState {
    async fn add_disk(&self, vm: &dyn Uvm, disk: ScsiDisk) -> Result<()> {
        if disk.path.is_relative() {
            return Err(Error::invalid_argument("path", "must be absolute"));
        }
        scsi(vm).add_disk(disk).await
    }
}

/// The config's console sink is ignored: the console is discarded.
struct ConsoleSinkIgnored;
#[async_trait]
impl Lie for ConsoleSinkIgnored {
    async fn create(&self, backend: &FakeBackend, mut config: UvmConfig) -> Result<Box<dyn Uvm>> {
        config.console = ConsoleSink::Discard;
        backend.create(config).await
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
        Mutant {
            name: "disk arguments checked before the state",
            promise: "lifecycle.state_checked_first",
            lie: || Box::new(ArgumentsCheckedBeforeState),
            caught_by: &[
                "lifecycle_every_call_on_stopped_vm_refused",
                "lifecycle_every_call_while_paused_follows_table",
            ],
            collateral: &[],
        },
        Mutant {
            name: "console sink ignored",
            promise: "lifecycle.console_file_created",
            lie: || Box::new(ConsoleSinkIgnored),
            caught_by: &["lifecycle_start_from_created"],
            collateral: &[],
        },
        Mutant {
            name: "restore forgets the disks",
            promise: "lifecycle.restore_same_vm",
            lie: || Box::new(RestoreForgetsDisks),
            caught_by: &["lifecycle_restore_from_snapshot"],
            collateral: &[],
        },
        Mutant {
            name: "restore forgets the NICs",
            promise: "lifecycle.restore_same_vm",
            lie: || Box::new(RestoreForgetsNics),
            caught_by: &["lifecycle_restore_from_snapshot"],
            collateral: &[],
        },
    ]
}
