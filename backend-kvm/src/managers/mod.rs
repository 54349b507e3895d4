//! The capability managers of a kvm VM: SCSI ([`scsi`]), VPMem ([`pmem`]),
//! network ([`net`]), shared folders ([`shares`]) and vsock ([`vsock`]),
//! together in [`Managers`], with what they share ([`context`]) and the one
//! way they remove a device ([`removal`]).
//!
//! Every manager exists from `create` on: adds before `start` are cold
//! plugs (the devices are on the bus when the guest boots), adds while
//! running are hot plugs; both are the same call. Devices listed in the
//! configuration's `devices` section are added before start the same way.
//! Changes are refused while paused or stopped (`InvalidState`, the
//! contract's table). Removal is two-phase ([`removal`]); when the VM
//! stops, every pending removal completes ([`Managers::release`]).
//!
//! # Lock order
//!
//! A manager's lock guards its own tables and nothing else: it is held
//! only to read or change them (and, for NICs, to open the tap of the NIC
//! being added), never while calling the hub or a device. Below the
//! managers, locks are taken in this order: the hub, the PCI root, a PCI
//! function, its device's state; the ACPI PM block and the hotplug
//! register block are taken alone. Removal completions (a PCI eject on
//! the control thread, a SCSI LUN release inside the device's event
//! handling) take only the manager's lock, which no one holds while
//! waiting for a lock below it.

pub mod context;
pub mod net;
pub mod pmem;
pub mod removal;
pub mod scsi;
pub mod shares;
pub mod vsock;

use std::path::PathBuf;
use std::sync::Arc;

use uvm_api::{BootDevices, ExitCell, Result, UvmConfig};

use crate::pci::hub::DeviceHub;
use context::ManagerContext;
use net::KvmNetwork;
use pmem::KvmVpmem;
use scsi::KvmScsi;
use shares::KvmShares;
use vsock::KvmVsock;

/// Every capability manager of one VM, and the hub they plug through.
pub struct Managers {
    /// SCSI controllers and disks.
    pub scsi: KvmScsi,
    /// VPMem devices.
    pub vpmem: KvmVpmem,
    /// NICs.
    pub network: KvmNetwork,
    /// Shared folders.
    pub shares: KvmShares,
    /// vsock listeners and connections (shared with the guest probe).
    pub vsock: Arc<KvmVsock>,
    hub: Arc<DeviceHub>,
}

impl Managers {
    /// The managers of `config`'s VM, whose state is `cell`; `virtiofsd`
    /// serves shared folders (none without it).
    pub fn new(config: &UvmConfig, cell: Arc<ExitCell>, virtiofsd: Option<PathBuf>) -> Self {
        let hub = Arc::new(DeviceHub::new(&config.id));
        let ctx = ManagerContext {
            vm_id: config.id.clone(),
            cell: cell.clone(),
            hub: hub.clone(),
        };
        Managers {
            scsi: KvmScsi::new(ctx.clone()),
            vpmem: KvmVpmem::new(ctx.clone(), config.memory_mib << 20),
            network: KvmNetwork::new(ctx.clone()),
            shares: KvmShares::new(ctx, virtiofsd),
            vsock: Arc::new(KvmVsock::new(&config.id, cell)),
            hub,
        }
    }

    /// The VM's PCI slots.
    pub fn hub(&self) -> &Arc<DeviceHub> {
        &self.hub
    }

    /// Adds the configuration's boot-time devices (cold plug), each through
    /// its manager's own add.
    pub fn add_boot_devices(&self, devices: &BootDevices) -> Result<()> {
        for index in 0..devices.scsi_controllers {
            self.scsi.do_add_controller(index)?;
        }
        for disk in &devices.scsi_disks {
            self.scsi.do_add_disk(disk.clone())?;
        }
        if let Some(controller) = devices.vpmem {
            self.vpmem.do_add_controller(controller)?;
        }
        for device in &devices.vpmem_devices {
            self.vpmem.do_add_device(device.clone())?;
        }
        for nic in &devices.nics {
            self.network.do_add_nic(nic.clone())?;
        }
        for share in &devices.shares {
            self.shares.do_add_share(share.clone())?;
        }
        Ok(())
    }

    /// Releases every device of the VM (it stopped, or never ran): the bus
    /// goes, every pending removal completes, the managers' tables empty
    /// (taps, daemons, image files and threads go with their entries) and
    /// every vsock connection is reset. The device step of
    /// [`crate::control::teardown`]; idempotent.
    pub fn release(&self) {
        self.hub.shut_down();
        self.scsi.shut_down();
        self.vpmem.shut_down();
        self.network.shut_down();
        self.shares.shut_down();
        self.vsock.shut_down();
    }
}
