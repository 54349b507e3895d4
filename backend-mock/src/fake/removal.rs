//! Removing a device from a fake VM, the same way for every manager: the
//! checks every remove makes ([`Core::unplug`]), then the removal itself,
//! at once before start (cold unplug), otherwise two-phase (hot unplug):
//! the entry is released in its [`uvm_api::DeviceTable`] and an [`eject`] task
//! finishes the release once the simulated guest lets go, with the
//! release's ticket, so that a late task of an earlier removal cannot
//! finish a newer one.

use std::fmt::Debug;

use tokio::runtime::Handle;
use tracing::debug;
use uvm_api::{Action, Error, Operation, ReleaseTicket, Removal, Resource, Result, State};

use super::core::Core;
use super::eject::{self, Eject};
use super::fault_point::FaultPoint;
use super::machine::{Machine, TableOf};

/// A remove call: which device, and where it lives.
pub(crate) struct Unplug<K, V> {
    /// The kind of device (checked against the profile, named in errors).
    pub resource: Resource,
    /// The device's id in errors and in the [`Removal`].
    pub id: String,
    /// Its table.
    pub table: TableOf<K, V>,
    /// Its key in the table.
    pub key: K,
    /// The fault point of this remove.
    pub fault: FaultPoint,
}

impl Core {
    /// Removes a device after the checks every remove makes, in this order:
    /// the profile has the removal (`NotSupported`), the state allows device
    /// changes (`InvalidState`), the device is attached (`NotFound`), the
    /// manager's own `check` on the machine, then an armed fault.
    pub(crate) fn unplug<K, V>(
        &self,
        unplug: Unplug<K, V>,
        check: impl FnOnce(&Machine) -> Result<()>,
    ) -> Result<Removal>
    where
        K: Ord + Clone + Debug + Send + 'static,
        V: 'static,
    {
        let Unplug {
            resource,
            id,
            table,
            key,
            fault,
        } = unplug;
        self.require(resource, Operation::Remove)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        if table(&mut m).attached(&key).is_none() {
            return Err(Error::not_found(resource, id));
        }
        check(&m)?;
        self.faults.take(fault)?;
        self.begin_removal(&mut m, table, key, resource, id)
    }

    /// Removes the attached device `key` of `table` (the caller checked it
    /// exists and holds the machine lock `m`): at once before start,
    /// otherwise by asking the guest to release it after `eject_delay`.
    fn begin_removal<K, V>(
        &self,
        m: &mut Machine,
        table: TableOf<K, V>,
        key: K,
        resource: Resource,
        id: String,
    ) -> Result<Removal>
    where
        K: Ord + Clone + Debug + Send + 'static,
        V: 'static,
    {
        if self.state() != State::Running {
            if table(m).take_attached(&key).is_none() {
                return Err(Error::not_found(resource, id));
            }
            debug!(%resource, %id, "cold unplug complete");
            m.count("devices_removed");
            return Ok(Removal::completed(resource, id));
        }
        let runtime = Handle::try_current().map_err(Error::backend)?;
        let (removal, ticket) = table(m).begin_release(&key, resource, id.clone())?;
        m.count("devices_removed");
        debug!(%resource, %id, ?ticket, "hot unplug requested; waiting for the guest to release it");
        let vm = self.weak();
        let release = move || {
            if let Some(vm) = vm.upgrade() {
                vm.finish_release(table, &key, ticket);
            }
        };
        eject::spawn(
            &runtime,
            Eject {
                delay: self.options.eject_delay,
                state: self.watch_state(),
                hold: self.faults.watch_hold(),
                release: Box::new(release),
            },
        );
        Ok(removal)
    }

    /// The guest released device `key` of `table` for release `ticket`:
    /// the device is gone and its id free (unless that release is over).
    fn finish_release<K, V>(&self, table: TableOf<K, V>, key: &K, ticket: ReleaseTicket)
    where
        K: Ord + Clone + Debug,
    {
        let mut m = self.lock();
        if let Some(released) = table(&mut m).finish_release(key, ticket) {
            released.complete();
            debug!(vm = %self.id, ?key, ?ticket, "guest released the device");
        }
    }
}
