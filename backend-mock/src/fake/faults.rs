//! Fault injection: failures, stubborn guests and guest exits on demand.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, Weak};

use tokio::sync::watch;
use tracing::{info, warn};
use uvm_api::{Error, ExitStatus, StopReason};

use super::core::Core;

/// An operation that [`Faults::fail_next`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// `Uvm::start` (the VM then ends `Stopped` with reason `StartFailed`).
    Start,
    /// `Uvm::stop`.
    Stop,
    /// `Uvm::pause`.
    Pause,
    /// `Uvm::resume`.
    Resume,
    /// `Uvm::save`.
    Save,
    /// `Uvm::stats`.
    Stats,
    /// `ScsiManager::add_controller`.
    AddScsiController,
    /// `ScsiManager::add_disk`.
    AddDisk,
    /// `ScsiManager::remove_disk`.
    RemoveDisk,
    /// `VpmemManager::add_device`.
    AddVpmem,
    /// `VpmemManager::remove_device`.
    RemoveVpmem,
    /// `NetworkManager::add_nic`.
    AddNic,
    /// `NetworkManager::remove_nic`.
    RemoveNic,
    /// `SharedFolderManager::add_share`.
    AddShare,
    /// `SharedFolderManager::remove_share`.
    RemoveShare,
    /// `PciManager::add_device`.
    AddPci,
    /// `PciManager::remove_device`.
    RemovePci,
    /// `VmSocketManager::listen`.
    Listen,
    /// `VmSocketManager::connect`.
    Connect,
    /// `MemoryManager::update_memory`.
    UpdateMemory,
    /// `ProcessorManager::update_limits`.
    UpdateProcessor,
    /// `CpuGroupManager::set_cpu_group`.
    SetCpuGroup,
    /// `ScsiManager::remove_controller`.
    RemoveScsiController,
    /// `VpmemManager::add_controller`.
    AddVpmemController,
}

impl FaultPoint {
    /// The snake-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultPoint::Start => "start",
            FaultPoint::Stop => "stop",
            FaultPoint::Pause => "pause",
            FaultPoint::Resume => "resume",
            FaultPoint::Save => "save",
            FaultPoint::Stats => "stats",
            FaultPoint::AddScsiController => "add_scsi_controller",
            FaultPoint::AddDisk => "add_disk",
            FaultPoint::RemoveDisk => "remove_disk",
            FaultPoint::AddVpmem => "add_vpmem",
            FaultPoint::RemoveVpmem => "remove_vpmem",
            FaultPoint::AddNic => "add_nic",
            FaultPoint::RemoveNic => "remove_nic",
            FaultPoint::AddShare => "add_share",
            FaultPoint::RemoveShare => "remove_share",
            FaultPoint::AddPci => "add_pci",
            FaultPoint::RemovePci => "remove_pci",
            FaultPoint::Listen => "listen",
            FaultPoint::Connect => "connect",
            FaultPoint::UpdateMemory => "update_memory",
            FaultPoint::UpdateProcessor => "update_processor",
            FaultPoint::SetCpuGroup => "set_cpu_group",
            FaultPoint::RemoveScsiController => "remove_scsi_controller",
            FaultPoint::AddVpmemController => "add_vpmem_controller",
        }
    }
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error inside [`Error::Backend`] returned by an operation that
/// [`Faults::fail_next`] made fail.
#[derive(Debug, thiserror::Error)]
#[error("injected fault at {point}")]
pub struct InjectedFault {
    /// Where the fault was injected.
    pub point: FaultPoint,
}

/// Fault injection for one [`crate::FakeUvm`], from [`crate::FakeUvm::faults`].
pub struct Faults {
    vm: Weak<Core>,
    armed: Mutex<HashSet<FaultPoint>>,
    hold_ejects: watch::Sender<bool>,
    ignore_power_button: AtomicBool,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("armed", &*self.armed_set())
            .field("hold_ejects", &self.holding_ejects())
            .field("ignore_power_button", &self.ignoring_power_button())
            .finish()
    }
}

impl Faults {
    pub(crate) fn new(vm: Weak<Core>) -> Faults {
        Faults {
            vm,
            armed: Mutex::new(HashSet::new()),
            hold_ejects: watch::Sender::new(false),
            ignore_power_button: AtomicBool::new(false),
        }
    }

    fn armed_set(&self) -> std::sync::MutexGuard<'_, HashSet<FaultPoint>> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next call of kind `point` fail with
    /// `Error::Backend(InjectedFault)` and change nothing.
    ///
    /// The fault fires on the next call that gets as far as the (simulated)
    /// hypervisor: one refused earlier for an unsupported capability, a
    /// wrong state or a bad argument leaves it armed. A failed `start` leaves
    /// the VM `Stopped` with reason `StartFailed`, as a real start failure.
    pub fn fail_next(&self, point: FaultPoint) {
        info!(point = %point, "fault armed");
        self.armed_set().insert(point);
    }

    /// Whether a fault is armed at `point`.
    pub fn is_armed(&self, point: FaultPoint) -> bool {
        self.armed_set().contains(&point)
    }

    /// Disarms every fault armed with [`Faults::fail_next`].
    pub fn clear(&self) {
        self.armed_set().clear();
    }

    /// While `hold` is true the simulated guest never releases removed
    /// devices: removals stay pending and their ids reserved. Setting it
    /// back to false lets pending removals complete.
    pub fn hold_ejects(&self, hold: bool) {
        info!(hold, "guest eject hold");
        self.hold_ejects.send_replace(hold);
    }

    /// Whether removals are held (see [`Faults::hold_ejects`]).
    pub fn holding_ejects(&self) -> bool {
        *self.hold_ejects.borrow()
    }

    /// While `ignore` is true the simulated guest ignores the power button:
    /// a graceful stop waits its whole timeout, then kills the VM (reason `Killed`).
    pub fn ignore_power_button(&self, ignore: bool) {
        info!(ignore, "guest power button handling");
        self.ignore_power_button.store(ignore, Ordering::SeqCst);
    }

    /// Whether the guest ignores the power button.
    pub fn ignoring_power_button(&self) -> bool {
        self.ignore_power_button.load(Ordering::SeqCst)
    }

    /// Makes the running (or paused) guest exit now with `reason`;
    /// [`uvm_api::Uvm::wait`] then returns it. A VM that never started has no
    /// guest to exit, and a stopped one has exited already: for those this
    /// only logs a warning.
    pub fn guest_exit(&self, reason: StopReason) {
        let Some(core) = self.vm.upgrade() else {
            warn!(%reason, "guest_exit on a VM that no longer exists");
            return;
        };
        core.guest_exit(ExitStatus::new(reason));
    }

    /// Consumes the fault armed at `point`, if any, as the error to return.
    pub(crate) fn take(&self, point: FaultPoint) -> uvm_api::Result<()> {
        if self.armed_set().remove(&point) {
            warn!(point = %point, "injecting fault");
            return Err(Error::backend(InjectedFault { point }));
        }
        Ok(())
    }

    /// A receiver that sees every change of the eject hold.
    pub(crate) fn watch_hold(&self) -> watch::Receiver<bool> {
        self.hold_ejects.subscribe()
    }
}
