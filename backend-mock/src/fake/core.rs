//! [`Core`]: one fake VM. Its [`Machine`] behind a lock, its lifecycle
//! state and exit in an [`ExitCell`], its fault switches, and the helpers
//! every operation uses. The operations themselves are `impl Core` blocks
//! in the files that own them (`lifecycle.rs`, `removal.rs`, `managers/`,
//! `guest/probe.rs`, `snapshot.rs`); this file imports none of them.
//!
//! Lock order: the machine lock, then the cell's own short lock (every
//! state change of the fake happens under the machine lock, so a state
//! read under it stays true until it is released).

use std::future::Future;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};
use uvm_api::{
    Action, Error, ExitCell, ExitStatus, Operation, Resource, Result, State, StopReason, UvmConfig,
    op_span,
};

use super::console;
use super::faults::{Faults, GuestExit};
use super::machine::Machine;
use super::options::FakeOptions;
use super::profile::Profile;

/// One fake VM. [`crate::FakeUvm`] is a handle on it; background tasks hold
/// it weakly so that none keeps a dropped VM alive.
pub(crate) struct Core {
    pub id: String,
    pub options: FakeOptions,
    pub faults: Faults,
    this: Weak<Core>,
    machine: Mutex<Machine>,
    cell: ExitCell,
}

impl Core {
    pub fn new(config: UvmConfig, options: FakeOptions) -> Arc<Core> {
        Arc::new_cyclic(|this| Core {
            id: config.id.clone(),
            options,
            faults: Faults::new(this.clone()),
            this: this.clone(),
            machine: Mutex::new(Machine::new(config)),
            cell: ExitCell::new(),
        })
    }

    /// The VM's machine, locked. Never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock()
    }

    pub fn weak(&self) -> Weak<Core> {
        self.this.clone()
    }

    pub fn profile(&self) -> &Profile {
        &self.options.profile
    }

    /// The lifecycle state.
    pub fn state(&self) -> State {
        self.cell.state()
    }

    /// Moves to `next` (never `Stopped`: see [`Core::exit`]) and tells every
    /// watcher. Called with the machine lock held.
    pub fn set_state(&self, next: State) {
        if !self.cell.set_unless_stopped(next) {
            warn!(vm = %self.id, %next, "state change refused: the VM has stopped");
        }
    }

    /// A receiver that sees every change of state.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.cell.watch_state()
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.cell.exit_status()
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> ExitStatus {
        self.cell.wait().await
    }

    /// `NotSupported` unless the profile has `operation` on `resource`.
    pub fn require(&self, resource: Resource, operation: Operation) -> Result<()> {
        if self.profile().allows(resource, operation) {
            Ok(())
        } else {
            Err(Error::not_supported(resource, operation))
        }
    }

    /// `ActionNotSupported` unless the profile has lifecycle action `action`.
    pub fn require_action(&self, action: Action) -> Result<()> {
        if self.profile().allows_action(action) {
            Ok(())
        } else {
            Err(Error::ActionNotSupported { action })
        }
    }

    /// Runs `operation` inside the VM's tracing span and logs a refusal.
    pub async fn traced<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let span = op_span(&self.id, operation);
        let result = work.instrument(span.clone()).await;
        if let Err(e) = &result {
            span.in_scope(|| debug!(kind = e.kind(), error = %e, "refused"));
        }
        result
    }

    /// Stops the VM with `status` if it is not stopped yet. Returns whether it did.
    pub fn exit(&self, status: ExitStatus) -> bool {
        self.exit_if(status, |_| true)
    }

    /// Stops the VM with `status` if its state passes `allowed`. Returns whether it did.
    ///
    /// The machine's own exit (clocks, pending removals, sockets) happens
    /// atomically with the exit, before anyone sees the VM stopped.
    pub fn exit_if(&self, status: ExitStatus, allowed: impl FnOnce(State) -> bool) -> bool {
        let mut m = self.lock();
        let released = self.cell.finish_if(status.clone(), |state| {
            allowed(state).then(|| m.on_exit(Instant::now()))
        });
        let Some(released) = released else {
            return false;
        };
        let sink = m.config.console.clone();
        drop(m);
        info!(vm = %self.id, status = %status, released, "VM stopped");
        console::write_exit(&sink, &self.id, &status);
        true
    }
}

impl GuestExit for Core {
    /// The guest itself exits: only a started guest (running or paused) can.
    fn guest_exit(&self, status: ExitStatus) -> bool {
        let exited = self.exit_if(status.clone(), |s| {
            matches!(s, State::Running | State::Paused)
        });
        if !exited {
            warn!(vm = %self.id, reason = %status.reason,
                "guest exit ignored: no guest is running");
        }
        exited
    }
}

/// Runs blocking host I/O off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Error::backend)?
}

impl Drop for Core {
    fn drop(&mut self) {
        // The last handle is gone: the VM goes with it, and so do its devices.
        let m = self.machine.get_mut();
        let status =
            ExitStatus::with_detail(StopReason::Killed, "the VM's last handle was dropped");
        if let Some(released) = self
            .cell
            .finish_if(status, |_| Some(m.on_exit(Instant::now())))
        {
            debug!(vm = %self.id, released, "VM dropped without stop");
        }
    }
}
