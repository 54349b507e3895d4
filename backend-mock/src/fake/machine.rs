//! [`Machine`]: everything a fake VM holds behind its lock: configuration,
//! clocks, device tables, sockets and counters. Its lifecycle state lives
//! in the VM's [`uvm_api::ExitCell`], next to the lock.

use std::collections::BTreeMap;

use tokio::time::Instant;
use uvm_api::{DeviceTable, Error, Released, Resource, Result, UvmConfig};

use super::clock::Clock;
use super::state::network::NicState;
use super::state::pci::PciState;
use super::state::resources::ResourceState;
use super::state::scsi::ScsiState;
use super::state::shares::ShareState;
use super::state::vpmem::VpmemState;
use super::state::vsock::VsockState;

/// Where a kind of device lives in the [`Machine`]: a plain function, so
/// that a task that outlives the lock (the guest's eject) can find the
/// entry again.
pub(crate) type TableOf<K, V> = fn(&mut Machine) -> &mut DeviceTable<K, V>;

/// The mutable state of one VM.
#[derive(Debug)]
pub(crate) struct Machine {
    /// A `start` is between its checks and the guest running.
    pub booting: bool,
    /// The configuration, with memory updates applied.
    pub config: UvmConfig,
    pub clock: Clock,
    pub scsi: ScsiState,
    pub vpmem: VpmemState,
    pub nics: NicState,
    pub shares: ShareState,
    pub pci: PciState,
    pub vsock: VsockState,
    pub resources: ResourceState,
    /// Event counters reported in `Stats::counters`.
    pub counters: BTreeMap<String, u64>,
    next_serial: u64,
}

impl Machine {
    pub fn new(config: UvmConfig) -> Machine {
        Machine {
            booting: false,
            config,
            clock: Clock::default(),
            scsi: ScsiState::default(),
            vpmem: VpmemState::default(),
            nics: NicState::default(),
            shares: ShareState::default(),
            pci: PciState::default(),
            vsock: VsockState::default(),
            resources: ResourceState::default(),
            counters: BTreeMap::new(),
            next_serial: 1,
        }
    }

    /// A fresh number for a listener.
    pub fn serial(&mut self) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        serial
    }

    /// Adds one to event counter `name`.
    pub fn count(&mut self, name: &str) {
        *self.counters.entry(name.to_owned()).or_default() += 1;
    }

    /// Attaches `value` at `key` of `table` and counts it; `AlreadyExists`
    /// (for device `id` of `resource`) if the key is taken, which a manager
    /// checks before it changes anything.
    pub fn attach<K: Ord + Clone, V>(
        &mut self,
        table: TableOf<K, V>,
        key: K,
        value: V,
        resource: Resource,
        id: String,
    ) -> Result<()> {
        table(self)
            .insert(key, value)
            .map_err(|_| Error::already_exists(resource, id))?;
        self.count("devices_added");
        Ok(())
    }

    /// The VM exits: clocks freeze, pending removals complete (the devices
    /// are gone with the VM), sockets close. Returns how many removals completed.
    pub fn on_exit(&mut self, now: Instant) -> usize {
        self.clock.stop(now);
        self.booting = false;
        self.vsock.close_all();
        Released::complete_all(self.scsi.controllers.finish_all())
            + Released::complete_all(self.scsi.disks.finish_all())
            + Released::complete_all(self.vpmem.devices.finish_all())
            + Released::complete_all(self.nics.nics.finish_all())
            + Released::complete_all(self.shares.shares.finish_all())
            + Released::complete_all(self.pci.devices.finish_all())
    }
}
