//! [`Faults`]: failures, stubborn guests and guest exits on demand.

use std::collections::HashSet;
use std::fmt;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};
use uvm_api::{Error, ExitStatus, StopReason};

use super::fault_point::{FaultPoint, InjectedFault};

/// What [`Faults::guest_exit`] asks of the VM it belongs to.
pub(crate) trait GuestExit: Send + Sync {
    /// The guest exits with `status` if it runs (or is paused); returns whether it did.
    fn guest_exit(&self, status: ExitStatus) -> bool;
}

/// Fault injection for one [`crate::FakeUvm`], from [`crate::FakeUvm::faults`].
pub struct Faults {
    vm: Weak<dyn GuestExit>,
    armed: Mutex<HashSet<FaultPoint>>,
    hold_ejects: watch::Sender<bool>,
    ignore_power_button: AtomicBool,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("armed", &*self.armed.lock())
            .field("hold_ejects", &self.holding_ejects())
            .field("ignore_power_button", &self.ignoring_power_button())
            .finish()
    }
}

impl Faults {
    /// Fault injection for `vm`, with nothing armed.
    pub(crate) fn new<V: GuestExit + 'static>(vm: Weak<V>) -> Faults {
        Faults {
            vm,
            armed: Mutex::new(HashSet::new()),
            hold_ejects: watch::Sender::new(false),
            ignore_power_button: AtomicBool::new(false),
        }
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
        self.armed.lock().insert(point);
    }

    /// Whether a fault is armed at `point`.
    pub fn is_armed(&self, point: FaultPoint) -> bool {
        self.armed.lock().contains(&point)
    }

    /// Disarms every fault armed with [`Faults::fail_next`].
    pub fn clear(&self) {
        self.armed.lock().clear();
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
        let Some(vm) = self.vm.upgrade() else {
            warn!(%reason, "guest_exit on a VM that no longer exists");
            return;
        };
        vm.guest_exit(ExitStatus::new(reason));
    }

    /// Consumes the fault armed at `point`, if any, as the error to return.
    pub(crate) fn take(&self, point: FaultPoint) -> uvm_api::Result<()> {
        if self.armed.lock().remove(&point) {
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
