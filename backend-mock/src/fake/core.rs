//! The shared core of a fake VM: its state behind a lock, its exit and state
//! broadcasts, its fault switches, and the helpers every operation uses.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, debug, info};
use uvm_api::{
    Action, Error, ExitStatus, Operation, Removal, Resource, Result, State, UvmConfig, op_span,
};

use super::backend::FakeOptions;
use super::console;
use super::eject;
use super::faults::Faults;
use super::machine::{DeviceKey, Machine};
use super::profile::Profile;
use super::table::Release;

/// One fake VM. [`crate::FakeUvm`] is a handle on it; background tasks hold
/// it weakly so that none keeps a dropped VM alive.
pub(crate) struct Core {
    pub id: String,
    pub options: FakeOptions,
    pub faults: Faults,
    this: Weak<Core>,
    machine: Mutex<Machine>,
    exit_tx: watch::Sender<Option<ExitStatus>>,
    state_tx: watch::Sender<State>,
}

impl Core {
    pub fn new(config: UvmConfig, options: FakeOptions) -> Arc<Core> {
        Arc::new_cyclic(|this| Core {
            id: config.id.clone(),
            options,
            faults: Faults::new(this.clone()),
            this: this.clone(),
            machine: Mutex::new(Machine::new(config)),
            exit_tx: watch::Sender::new(None),
            state_tx: watch::Sender::new(State::Created),
        })
    }

    /// The VM's state, locked. Never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn weak(&self) -> Weak<Core> {
        self.this.clone()
    }

    pub fn profile(&self) -> &Profile {
        &self.options.profile
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

    /// Moves to `next` and tells every watcher.
    pub fn set_state(&self, m: &mut Machine, next: State) {
        m.state = next;
        self.state_tx.send_replace(next);
    }

    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state_tx.subscribe()
    }

    pub fn watch_exit(&self) -> watch::Receiver<Option<ExitStatus>> {
        self.exit_tx.subscribe()
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit_tx.borrow().clone()
    }

    /// Stops the VM with `status` if it is not stopped yet. Returns whether it did.
    pub fn exit(&self, status: ExitStatus) -> bool {
        self.exit_if(status, |_| true)
    }

    /// The guest itself exits: only a started guest (running or paused) can.
    pub fn guest_exit(&self, status: ExitStatus) -> bool {
        let exited = self.exit_if(status.clone(), |s| {
            matches!(s, State::Running | State::Paused)
        });
        if !exited {
            tracing::warn!(vm = %self.id, reason = %status.reason,
                "guest exit ignored: no guest is running");
        }
        exited
    }

    /// Stops the VM with `status` if its state passes `allowed`. Returns whether it did.
    pub fn exit_if(&self, status: ExitStatus, allowed: impl Fn(State) -> bool) -> bool {
        let mut m = self.lock();
        if m.state == State::Stopped || !allowed(m.state) {
            return false;
        }
        let released = m.on_exit(Instant::now());
        // The status is published before the state so that anyone who sees
        // `Stopped` also sees why.
        self.exit_tx.send_replace(Some(status.clone()));
        self.set_state(&mut m, State::Stopped);
        let sink = m.config.console.clone();
        drop(m);
        info!(vm = %self.id, status = %status, released, "VM stopped");
        console::write_exit(&sink, &self.id, &status);
        true
    }

    /// Removes the attached device `key` (the caller checked it exists):
    /// at once before start (cold unplug), otherwise by asking the guest to
    /// release it after `eject_delay`.
    pub fn begin_removal(
        &self,
        m: &mut Machine,
        key: DeviceKey,
        resource: Resource,
        id: String,
    ) -> Result<Removal> {
        if m.state != State::Running {
            if !m.remove_now(&key) {
                return Err(Error::not_found(resource, id));
            }
            debug!(%resource, %id, "cold unplug complete");
            m.count("devices_removed");
            return Ok(Removal::completed(resource, id));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(Error::backend)?;
        let serial = m.serial();
        let (removal, completer) = Removal::pending(resource, id.clone());
        if !m.begin_release(&key, Release { serial, completer }) {
            return Err(Error::not_found(resource, id));
        }
        m.count("devices_removed");
        debug!(%resource, %id, serial, "hot unplug requested; waiting for the guest to release it");
        eject::spawn(
            &runtime,
            eject::Eject {
                vm: self.weak(),
                key,
                serial,
                delay: self.options.eject_delay,
                state: self.watch_state(),
                hold: self.faults.watch_hold(),
            },
        );
        Ok(removal)
    }

    /// The guest released the device `key` of removal `serial`.
    pub fn finish_release(&self, key: &DeviceKey, serial: u64) {
        let mut m = self.lock();
        if m.state == State::Stopped {
            return;
        }
        if m.finish_release(key, serial) {
            debug!(vm = %self.id, ?key, serial, "guest released the device");
        }
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
        let m = self
            .machine
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if m.state != State::Stopped {
            let released = m.on_exit(Instant::now());
            m.state = State::Stopped;
            debug!(vm = %self.id, released, "VM dropped without stop");
        }
    }
}
