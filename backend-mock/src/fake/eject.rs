//! The simulated guest releasing a hot-removed device.
//!
//! One short task per removal: it waits `eject_delay`, then for the guest to
//! be running (a paused guest releases nothing) and not held by
//! [`crate::Faults::hold_ejects`], then finishes the removal. It ends as soon
//! as the VM stops (the stop completes every removal itself) or is dropped.

use std::sync::Weak;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use uvm_api::State;

use super::core::Core;
use super::machine::DeviceKey;

pub(crate) struct Eject {
    pub vm: Weak<Core>,
    pub key: DeviceKey,
    pub serial: u64,
    pub delay: Duration,
    pub state: watch::Receiver<State>,
    pub hold: watch::Receiver<bool>,
}

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
        if released && let Some(vm) = self.vm.upgrade() {
            vm.finish_release(&self.key, self.serial);
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
