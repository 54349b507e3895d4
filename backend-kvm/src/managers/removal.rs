//! Two-phase removal, the one way every manager removes a device.
//!
//! The entry leaves [`DeviceTable::attached`] at once (a second remove is
//! `NotFound`) but keeps its id, the host side detaches the device (the hub
//! unplugs its PCI function, or the SCSI controller detaches a LUN), and
//! the device's [`ReleaseSignal`] says when the guest has let go: then the
//! entry leaves the table, what it owns (threads, daemons, files) is
//! dropped, and only after that the contract's [`Removal`] completes. If
//! the host side refuses, the entry is attached again and nothing changed.

use std::sync::Arc;

use parking_lot::Mutex;
use uvm_api::{DeviceTable, ReleaseTicket, Removal, Resource, Result};
use uvm_devices::release::ReleaseSignal;

/// Where a removal finds its entry in a manager's state `S`.
pub struct Unplug<S, K, V> {
    /// The kind of device.
    pub resource: Resource,
    /// The entry's table in `S`.
    pub table: fn(&mut S) -> &mut DeviceTable<K, V>,
    /// Bookkeeping once the guest let go (before the id is free again).
    pub released: fn(&mut S, &V),
}

impl<S, K, V> Unplug<S, K, V>
where
    S: Send + 'static,
    K: Ord + Clone + Send + 'static,
    V: Send + 'static,
{
    /// Removes the attached entry `key` (named `id` in errors and the
    /// [`Removal`]) from `state`; `detach` starts the host side and returns
    /// the signal of the guest's release. `detach` and the release run with
    /// no lock of the manager held (the release takes it).
    pub fn start(
        &self,
        state: &Arc<Mutex<S>>,
        key: K,
        id: &str,
        detach: impl FnOnce() -> Result<ReleaseSignal>,
    ) -> Result<Removal> {
        let (removal, ticket) =
            (self.table)(&mut state.lock()).begin_release(&key, self.resource, id)?;
        match detach() {
            Ok(signal) => {
                let weak = Arc::downgrade(state);
                let (table, released) = (self.table, self.released);
                signal.on_release(move || {
                    if let Some(state) = weak.upgrade() {
                        finish(&state, table, released, &key, ticket);
                    }
                });
                Ok(removal)
            }
            Err(e) => {
                (self.table)(&mut state.lock()).cancel_release(&key, ticket);
                Err(e)
            }
        }
    }
}

/// The guest released `key`: the entry leaves the table, then (with the
/// lock released) its value is dropped and the removal completes.
fn finish<S, K: Ord + Clone, V>(
    state: &Mutex<S>,
    table: fn(&mut S) -> &mut DeviceTable<K, V>,
    released: fn(&mut S, &V),
    key: &K,
    ticket: ReleaseTicket,
) {
    let done = {
        let mut state = state.lock();
        let done = table(&mut state).finish_release(key, ticket);
        if let Some(done) = &done {
            released(&mut state, done.value());
        }
        done
    };
    if let Some(done) = done {
        done.complete();
    }
}
