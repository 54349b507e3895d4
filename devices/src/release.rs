//! [`ReleaseSignal`]: the device side of two-phase removal, the signal
//! that the guest has let go of a device the host removed.
//!
//! Whoever removes a device gets one and attaches what must happen once the
//! guest let go (the VMM completes the contract's `RemovalCompleter` there);
//! whoever observes the guest's release completes it. Two removals use it:
//! a SCSI LUN ([`crate::virtio::scsi::ScsiHost::remove_lun`]: the guest
//! re-posts the event buffer that carried the REMOVED event) and a PCI
//! function unplugged through ACPI hotplug (the guest's `_EJ0` write
//! reaches the VMM's hub). It is one-shot and idempotent; callbacks run on
//! the thread that completes it, with no lock of its own held.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    released: bool,
    callbacks: Vec<Callback>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// Completes when the guest has released a removed device. Cheap to clone;
/// clones watch the same removal.
#[derive(Clone, Default)]
pub struct ReleaseSignal {
    shared: Arc<Shared>,
}

impl fmt::Debug for ReleaseSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseSignal")
            .field("released", &self.is_released())
            .finish()
    }
}

impl ReleaseSignal {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock()
    }

    /// A release not yet signalled.
    pub fn pending() -> Self {
        ReleaseSignal::default()
    }

    /// A release that already happened.
    pub fn done() -> Self {
        let r = ReleaseSignal::default();
        r.complete();
        r
    }

    /// Whether the guest has released the device.
    pub fn is_released(&self) -> bool {
        self.lock().released
    }

    /// Waits up to `timeout` for the release; returns whether it happened.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let mut guard = self.lock();
        let _ = self
            .shared
            .cond
            .wait_while_for(&mut guard, |s| !s.released, timeout);
        guard.released
    }

    /// Runs `f` once the device is released: now if it already is, otherwise on
    /// the thread that observes the release (keep `f` short and non-blocking,
    /// e.g. completing a `uvm_api::RemovalCompleter`).
    pub fn on_release(&self, f: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        if st.released {
            drop(st);
            f();
        } else {
            st.callbacks.push(Box::new(f));
        }
    }

    /// Marks the device released and runs the callbacks (idempotent).
    pub fn complete(&self) {
        let callbacks = {
            let mut st = self.lock();
            if st.released {
                return;
            }
            st.released = true;
            std::mem::take(&mut st.callbacks)
        };
        self.shared.cond.notify_all();
        for cb in callbacks {
            cb();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn callbacks_and_wait() {
        let r = ReleaseSignal::pending();
        let hit = Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        r.on_release(move || h.store(true, Ordering::SeqCst));
        assert!(!r.wait_timeout(Duration::from_millis(1)));
        r.clone().complete();
        assert!(hit.load(Ordering::SeqCst));
        assert!(r.wait_timeout(Duration::from_millis(1)));
        let late = Arc::new(AtomicBool::new(false));
        let l = late.clone();
        r.on_release(move || l.store(true, Ordering::SeqCst));
        assert!(late.load(Ordering::SeqCst));
        assert!(ReleaseSignal::done().is_released());
    }
}
