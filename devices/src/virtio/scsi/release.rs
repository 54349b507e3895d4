//! The signal that the guest has let go of a removed LUN.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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

/// Completes when the guest has released a LUN removed with
/// [`super::ScsiHost::remove_lun`]. Cheap to clone; clones watch the same
/// removal. See the module documentation of [`super`] for when it fires.
#[derive(Clone, Default)]
pub struct LunRelease {
    shared: Arc<Shared>,
}

impl fmt::Debug for LunRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LunRelease")
            .field("released", &self.is_released())
            .finish()
    }
}

impl LunRelease {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A release not yet signalled.
    pub(crate) fn pending() -> Self {
        LunRelease::default()
    }

    /// A release that already happened.
    pub(crate) fn done() -> Self {
        let r = LunRelease::default();
        r.complete();
        r
    }

    /// Whether the guest has released the LUN.
    pub fn is_released(&self) -> bool {
        self.lock().released
    }

    /// Waits up to `timeout` for the release; returns whether it happened.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .shared
            .cond
            .wait_timeout_while(guard, timeout, |s| !s.released)
            .unwrap_or_else(PoisonError::into_inner);
        guard.released
    }

    /// Runs `f` once the LUN is released: now if it already is, otherwise on
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

    /// Marks the LUN released and runs the callbacks (idempotent).
    pub(crate) fn complete(&self) {
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
        let r = LunRelease::pending();
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
        assert!(LunRelease::done().is_released());
    }
}
