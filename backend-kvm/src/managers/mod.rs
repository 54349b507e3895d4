//! The capability managers of a kvm VM: SCSI ([`scsi`]), VPMem ([`pmem`]),
//! network ([`net`]) and shared folders ([`shares`]), all virtio-pci
//! functions plugged through the VM's [`DeviceHub`].
//!
//! Every manager exists from `create` on: adds before `start` are cold
//! plugs (the devices are on the bus when the guest boots), adds while
//! running are hot plugs; both are the same call. Devices listed in the
//! configuration's `devices` section are added before start the same way.
//! Changes are refused while paused or stopped (`InvalidState`, the
//! contract's table). Removal is two-phase (see [`ids::IdTable`]); when the
//! VM stops, every pending removal completes.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use uvm_api::{Action, Error, Removal, RemovalCompleter, Resource, Result, State};

use crate::lifecycle::Lifecycle;
use crate::pci::hub::{DeviceHub, HubError};
use ids::IdTable;

pub mod ids;
pub mod net;
pub mod pmem;
pub mod scsi;
pub mod shares;

/// What every manager of a VM shares.
#[derive(Clone)]
pub struct ManagerContext {
    /// The VM's id (for logs).
    pub vm_id: String,
    /// The VM's lifecycle (state checks).
    pub lifecycle: Arc<Lifecycle>,
    /// The VM's PCI slots.
    pub hub: Arc<DeviceHub>,
}

impl ManagerContext {
    /// Refuses device changes outside created and running.
    pub fn check_state(&self) -> Result<()> {
        self.lifecycle
            .state()
            .check(Action::ChangeDevices)
            .map(|_| ())
    }

    /// Maps a hub error for `resource` to the contract's error.
    pub fn hub_error(&self, resource: Resource, e: HubError) -> Error {
        match e {
            HubError::Stopped => Error::InvalidState {
                operation: Action::ChangeDevices.as_str().into(),
                state: State::Stopped,
            },
            HubError::NoFreeSlot(range) => Error::LimitReached {
                resource,
                limit: format!("{} PCI slots ({range:?})", range.clone().count()),
            },
            other => Error::backend(other),
        }
    }
}

/// Locks a manager's state, recovering from a poisoned lock.
pub(crate) fn lock<S>(state: &Mutex<S>) -> MutexGuard<'_, S> {
    state.lock()
}

/// Completes the removals of a VM that stopped.
pub(crate) fn complete_all(completers: Vec<RemovalCompleter>) {
    for c in completers {
        c.complete();
    }
}

/// Where a removal finds its entry in a manager's state `S`.
pub(crate) struct Unplug<S, K, V> {
    /// The kind of device.
    pub resource: Resource,
    /// The entry's table in `S`.
    pub table: fn(&mut S) -> &mut IdTable<K, V>,
    /// Bookkeeping once the guest let go (before the id is free again).
    pub released: fn(&mut S, &V),
}

impl<S, K, V> Unplug<S, K, V>
where
    S: Send + 'static,
    K: Ord + Clone + Send + 'static,
    V: Send + 'static,
{
    /// Starts the two-phase removal of the attached entry `key` whose
    /// device is in PCI `slot`: the id stays taken until the guest ejects
    /// the device (or at once when the guest was not using it), then the
    /// entry (and what it owns) is dropped and the removal completes.
    pub fn start(
        &self,
        ctx: &ManagerContext,
        state: &Arc<Mutex<S>>,
        key: K,
        slot: u8,
        id: &str,
    ) -> Result<Removal> {
        let (removal, completer) = Removal::pending(self.resource, id);
        if !(self.table)(&mut lock(state)).begin_release(&key, completer) {
            return Err(Error::not_found(self.resource, id));
        }
        let weak = Arc::downgrade(state);
        let (table, released) = (self.table, self.released);
        let released_key = key.clone();
        let on_eject = move || {
            let Some(state) = weak.upgrade() else { return };
            let done = {
                let mut state = lock(&state);
                let done = table(&mut state).finish_release(&released_key);
                if let Some((_, value)) = &done {
                    released(&mut state, value);
                }
                done
            };
            // What the entry owns (threads, daemons, files) goes before the id is free.
            if let Some((completer, value)) = done {
                drop(value);
                if let Some(c) = completer {
                    c.complete();
                }
            }
        };
        // No manager lock across the hub or the signal: the release takes it.
        match ctx.hub.unplug(slot) {
            Ok(signal) => signal.on_release(on_eject),
            Err(e) => {
                let mut state = lock(state);
                let table = (self.table)(&mut state);
                if let Some((_, value)) = table.finish_release(&key) {
                    table.insert(key, value);
                }
                return Err(ctx.hub_error(self.resource, e));
            }
        }
        Ok(removal)
    }
}
