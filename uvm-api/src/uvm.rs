//! The lifecycle trait every backend implements.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exit::{ExitError, ExitStatus};
use crate::managers::{
    CpuGroupManager, MemoryManager, NetworkManager, PciManager, ProcessorManager, ScsiManager,
    SharedFolderManager, VmSocketManager, VpmemManager,
};
use crate::probe::GuestProbe;
use crate::resource::{Operation, Resource};
use crate::state::{Action, State};
use crate::stats::Stats;

/// How [`Uvm::stop`] stops the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// Ask the guest to power off (ACPI power button or equivalent). If it has
    /// not within `timeout`, stop it by force. The reason is `Shutdown` if the
    /// guest complied, `Killed` otherwise. A guest that is not running (the VM
    /// is `Created` or `Paused`) cannot answer the button, so it is stopped at
    /// once with reason `Killed`.
    Graceful {
        /// How long the guest gets to power off.
        timeout: Duration,
    },
    /// Stop at once. The reason is `Killed`.
    Force,
}

/// A utility VM: one running (or to-be-run, or finished) guest.
///
/// Object safe: use it as `Box<dyn Uvm>` or `Arc<dyn Uvm>`. Every method
/// checks the lifecycle table of the crate docs first and returns
/// [`crate::Error::InvalidState`] for an operation the state does not allow.
#[async_trait]
pub trait Uvm: Send + Sync {
    /// The VM's id, from its config.
    fn id(&self) -> &str;

    /// The current lifecycle state.
    fn state(&self) -> State;

    /// Boots the guest. On a failure before the guest runs, the VM ends
    /// `Stopped` with reason `StartFailed` and the error is returned.
    async fn start(&self) -> Result<()>;

    /// Stops the VM and returns once it has stopped. Idempotent once stopped.
    async fn stop(&self, mode: StopMode) -> Result<()>;

    /// Parks every virtual CPU. Guest time does not advance while paused.
    async fn pause(&self) -> Result<()>;

    /// Resumes a paused VM.
    async fn resume(&self) -> Result<()>;

    /// Writes a snapshot of a paused VM to `dest`, which `Backend::restore` reads.
    /// `ActionNotSupported` if the backend cannot save.
    async fn save(&self, dest: &Path) -> Result<()>;

    /// Waits until the VM stops and returns why. Any number of callers may
    /// wait, at any time, and all get the same status; after the exit it
    /// returns at once.
    async fn wait(&self) -> ExitStatus;

    /// The exit status if the VM has stopped, without waiting.
    fn exit_status(&self) -> Option<ExitStatus>;

    /// Current statistics. Valid in every state; figures freeze once stopped.
    async fn stats(&self) -> Result<Stats>;

    /// Whether `operation` on `resource` works (truthfulness rule: true if and
    /// only if the manager is present and the call works in every state where
    /// it is documented to work).
    fn supported(&self, resource: Resource, operation: Operation) -> bool;

    /// Whether a lifecycle action that a backend may lack (pause, resume,
    /// save) works. Start and stop always do.
    fn supports_action(&self, action: Action) -> bool;

    /// The error of an unexpected exit (crash, panic, VMM error, failed start);
    /// `None` while running and after an expected exit.
    fn exit_error(&self) -> Option<ExitError> {
        self.exit_status().and_then(|s| s.error())
    }

    /// SCSI controllers and disks, if the backend has them.
    fn scsi(&self) -> Option<&dyn ScsiManager> {
        None
    }

    /// Virtual persistent memory, if the backend has it.
    fn vpmem(&self) -> Option<&dyn VpmemManager> {
        None
    }

    /// Network adapters, if the backend has them.
    fn network(&self) -> Option<&dyn NetworkManager> {
        None
    }

    /// PCI device assignment, if the backend has it.
    fn pci(&self) -> Option<&dyn PciManager> {
        None
    }

    /// Host/guest sockets, if the backend has them.
    fn vm_socket(&self) -> Option<&dyn VmSocketManager> {
        None
    }

    /// Shared folders, if the backend has any kind of them.
    fn shared_folders(&self) -> Option<&dyn SharedFolderManager> {
        None
    }

    /// Memory updates, if the backend has them.
    fn memory(&self) -> Option<&dyn MemoryManager> {
        None
    }

    /// Processor limit updates, if the backend has them.
    fn processor(&self) -> Option<&dyn ProcessorManager> {
        None
    }

    /// CPU group membership, if the backend has it.
    fn cpu_group(&self) -> Option<&dyn CpuGroupManager> {
        None
    }

    /// A view from inside the guest, for tests and conformance checks.
    fn guest_probe(&self) -> Option<&dyn GuestProbe> {
        None
    }
}
