//! The one way a VM's run ends, whatever ended it (the guest, `stop`, a
//! dropped handle, a failed start), always in this order:
//!
//! 1. the vCPU threads stop and are joined (a thread that does not stop in
//!    time is logged and left behind);
//! 2. the VM's devices are released (`Managers::release` in
//!    [`crate::managers`]: pending removals complete, taps, daemons, image
//!    files and their threads go);
//! 3. the PCI root bus and its functions are dropped;
//! 4. the stats are frozen (resident memory measured one last time);
//! 5. the exit status is published: whoever waits hears of the stop only
//!    once nothing of the VM is left on the host.
//!
//! A VM that never ran has only steps 2 and 5 ([`never_started`]).

use std::time::{Duration, Instant};

use uvm_api::ExitCell;
use uvm_api::ExitStatus;

use super::controller::{Controller, PAUSE_TIMEOUT};
use super::protocol::{Command, VmmEvent};
use crate::memory;
use crate::vcpu::control::Want;

impl Controller {
    /// Ends the run with `status` (steps 1 to 5).
    pub(super) fn finish(&mut self, status: ExitStatus) {
        tracing::info!(vm = %self.id, "stopping: {status}");
        self.stop_vcpus();
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
        if let Some(release) = self.release_devices.take() {
            release();
        }
        drop(self.pci.take());
        let resident = self
            .stats
            .mem
            .lock()
            .take()
            .and_then(|m| memory::resident_bytes(&m));
        *self.stats.final_resident.lock() = resident;
        self.lifecycle.finish(status);
        self.close_inbox();
    }

    /// Step 1: every vCPU thread leaves `KVM_RUN` and ends.
    fn stop_vcpus(&mut self) {
        self.control.set(Want::Stop);
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            self.kick_all();
            std::thread::sleep(Duration::from_millis(1));
        }
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::error!(vm = %self.id, "a vCPU thread did not stop; leaving it behind");
            }
        }
    }

    /// Answers what is left in the inbox, so that no caller waits for a
    /// control thread that is gone.
    fn close_inbox(&mut self) {
        self.inbox.close();
        while let Ok(event) = self.inbox.try_recv() {
            match event {
                VmmEvent::Command(Command::Stop(_, reply)) => {
                    let _ = reply.send(());
                }
                VmmEvent::Command(Command::InjectCrash(reply)) => {
                    let _ = reply.send(false);
                }
                VmmEvent::Command(Command::ParkedAt(reply)) => {
                    let _ = reply.send(Vec::new());
                }
                _ => {}
            }
        }
    }
}

/// Ends a VM that never ran (stopped before start, failed to start, or
/// dropped): its devices are released, then the exit is published.
pub fn never_started(release_devices: impl FnOnce(), lifecycle: &ExitCell, status: ExitStatus) {
    release_devices();
    lifecycle.finish(status);
}
