//! The simulated guest releasing a hot-removed device.
//!
//! One short task per removal: it waits `eject_delay`, then for the guest to
//! be running (a paused guest releases nothing) and not held by
//! [`crate::Faults::hold_ejects`], then runs its `release` action, which
//! finishes the removal. It ends without releasing as soon as the VM stops
//! (the stop completes every removal itself) or is dropped.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use uvm_api::State;

/// One pending guest release.
pub(crate) struct Eject {
    /// How long the guest takes to let go.
    pub delay: Duration,
    /// The VM's state.
    pub state: watch::Receiver<State>,
    /// The eject hold of [`crate::Faults::hold_ejects`].
    pub hold: watch::Receiver<bool>,
    /// What to do once the guest has let go.
    pub release: Box<dyn FnOnce() + Send>,
}

/// Runs `eject` on `runtime`.
pub(crate) fn spawn(runtime: &Handle, eject: Eject) {
    runtime.spawn(eject.run());
}

impl Eject {
    async fn run(mut self) {
        let stopped = {
            let mut state = self.state.clone();
            async move {
                // An error means the VM is gone, which is a stop as well.
                let _gone = state.wait_for(|s| *s == State::Stopped).await;
            }
        };
        let released = tokio::select! {
            released = self.guest_releases() => released,
            () = stopped => false,
        };
        if released {
            (self.release)();
        }
    }

    /// Waits until the guest would let go of the device. False if the VM went away.
    async fn guest_releases(&mut self) -> bool {
        tokio::time::sleep(self.delay).await;
        loop {
            let running = *self.state.borrow_and_update() == State::Running;
            let held = *self.hold.borrow_and_update();
            if running && !held {
                return true;
            }
            tokio::select! {
                changed = self.state.changed() => if changed.is_err() { return false },
                changed = self.hold.changed() => if changed.is_err() { return false },
            }
        }
    }
}
