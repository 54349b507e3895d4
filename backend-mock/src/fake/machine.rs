//! Everything a fake VM holds, behind one lock: lifecycle state, clocks,
//! device tables, sockets.

use std::collections::BTreeMap;

use tokio::time::Instant;
use uvm_api::{State, UvmConfig};

use super::clock::Clock;
use super::network::NicState;
use super::pci::PciState;
use super::resources::ResourceState;
use super::scsi::ScsiState;
use super::shares::{ShareKey, ShareState};
use super::table::Release;
use super::vpmem::VpmemState;
use super::vsock::VsockState;

/// Identifies a device across tables, for the eject task that releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceKey {
    ScsiController(u8),
    ScsiDisk(u8, u8),
    Vpmem(u32),
    Nic(String),
    Share(ShareKey),
    Pci(String),
}

/// The mutable state of one VM.
#[derive(Debug)]
pub(crate) struct Machine {
    pub state: State,
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
            state: State::Created,
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

    /// A fresh number for a removal or a listener.
    pub fn serial(&mut self) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        serial
    }

    /// Adds one to event counter `name`.
    pub fn count(&mut self, name: &str) {
        *self.counters.entry(name.to_owned()).or_default() += 1;
    }

    /// Removes an attached device at once (cold unplug). False if there is none.
    pub fn remove_now(&mut self, key: &DeviceKey) -> bool {
        match key {
            DeviceKey::ScsiController(i) => self.scsi.controllers.remove_now(i).is_some(),
            DeviceKey::ScsiDisk(c, l) => self.scsi.disks.remove_now(&(*c, *l)).is_some(),
            DeviceKey::Vpmem(id) => self.vpmem.devices.remove_now(id).is_some(),
            DeviceKey::Nic(id) => self.nics.nics.remove_now(id).is_some(),
            DeviceKey::Share(k) => self.shares.shares.remove_now(k).is_some(),
            DeviceKey::Pci(id) => self.pci.devices.remove_now(id).is_some(),
        }
    }

    /// Marks an attached device as being released by the guest.
    pub fn begin_release(&mut self, key: &DeviceKey, release: Release) -> bool {
        match key {
            DeviceKey::ScsiController(i) => self.scsi.controllers.begin_release(i, release),
            DeviceKey::ScsiDisk(c, l) => self.scsi.disks.begin_release(&(*c, *l), release),
            DeviceKey::Vpmem(id) => self.vpmem.devices.begin_release(id, release),
            DeviceKey::Nic(id) => self.nics.nics.begin_release(id, release),
            DeviceKey::Share(k) => self.shares.shares.begin_release(k, release),
            DeviceKey::Pci(id) => self.pci.devices.begin_release(id, release),
        }
    }

    /// The guest released the device: it is gone and its id free.
    pub fn finish_release(&mut self, key: &DeviceKey, serial: u64) -> bool {
        match key {
            DeviceKey::ScsiController(i) => self.scsi.controllers.finish_release(i, serial),
            DeviceKey::ScsiDisk(c, l) => self.scsi.disks.finish_release(&(*c, *l), serial),
            DeviceKey::Vpmem(id) => self.vpmem.devices.finish_release(id, serial),
            DeviceKey::Nic(id) => self.nics.nics.finish_release(id, serial),
            DeviceKey::Share(k) => self.shares.shares.finish_release(k, serial),
            DeviceKey::Pci(id) => self.pci.devices.finish_release(id, serial),
        }
    }

    /// The VM exits: clocks freeze, pending removals complete (the devices
    /// are gone with the VM), sockets close. Returns how many removals completed.
    pub fn on_exit(&mut self, now: Instant) -> usize {
        self.clock.stop(now);
        self.booting = false;
        self.vsock.close_all();
        self.scsi.controllers.finish_all()
            + self.scsi.disks.finish_all()
            + self.vpmem.devices.finish_all()
            + self.nics.nics.finish_all()
            + self.shares.shares.finish_all()
            + self.pci.devices.finish_all()
    }
}
