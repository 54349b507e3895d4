//! The PCI root bus of a VM and its fixed function.
//!
//! Wiring (see `uvm_devices::pci`): a [`PciRoot`] shared by a [`PciCam`] on
//! the port bus at `0xcf8` (configuration mechanism #1; no ECAM/MCFG: the
//! virtio capabilities all sit in the first 256 bytes, which mechanism #1
//! reaches) and a [`PciBarWindow`] on the MMIO bus over [`BAR_WINDOW`],
//! which lies inside the DSDT's `PCI0._CRS` 32-bit window
//! ([`crate::arch::layout::PCI_MMIO32`]). The root assigns BAR addresses
//! before boot, like firmware, and Linux keeps them. The virtio-vsock
//! function is at [`slots::VSOCK`] from the start; every other function
//! comes through the hub ([`crate::pci::hub`]).
//!
//! Interrupts: MSI-X through [`crate::irq::KvmMsi`]. INTx is not routed
//! (the DSDT has no `_PRT`; Linux's virtio-pci driver uses the MSI-X the
//! transport offers). Queue notifications reach each function's device
//! worker through `KVM_IOEVENTFD`s on the notification region of BAR 0
//! ([`crate::ioevents`]); an MMIO exit there still reaches the worker.

use std::sync::Arc;

use parking_lot::Mutex;
use uvm_devices::bus::Bus;
use uvm_devices::interrupt::{MsiSink, NoIrq};
use uvm_devices::ioevent::IoEventRegistry;
use uvm_devices::pci::{PciBarWindow, PciCam, PciRoot, SharedFunction};
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::worker::{KickCount, PanicHook};
use uvm_devices::virtio::{GuestMemoryHandle, VirtioDevice};

use crate::error::VmmError;
use crate::memory::GuestMem;
use crate::pci::hub::worker_name;
use crate::pci::slots;

/// Port of the configuration address register (mechanism #1).
pub const PCI_CAM_PORT: u64 = 0xcf8;
/// Ports of mechanism #1 (`0xcf8..=0xcff`).
pub const PCI_CAM_PORTS: u64 = 8;
/// The window BARs are assigned from: base and size (inside the DSDT's
/// `_CRS` window [`crate::arch::layout::PCI_MMIO32`]).
pub const BAR_WINDOW: (u64, u64) = (0xc000_0000, 0x1000_0000);
/// Vendor and device id of the host bridge (Intel Q35 MCH, which Linux
/// knows needs no quirks).
pub const HOST_BRIDGE_ID: (u16, u16) = (0x8086, 0x29c0);

/// The VM's PCI devices, for the control thread and the managers.
pub struct PciDevices {
    /// The root bus.
    pub root: Arc<Mutex<PciRoot>>,
    /// The virtio-vsock function.
    pub vsock: Arc<Mutex<VirtioPciDevice>>,
}

/// How the VM's device workers are wired: where their kicks are tied to
/// notification addresses, who hears of a worker's panic, and where kicks
/// are counted.
pub struct WorkerWiring {
    /// The ioeventfd registry.
    pub ioevents: Arc<dyn IoEventRegistry>,
    /// Told when a worker panicked.
    pub on_panic: PanicHook,
    /// The VM's kick count.
    pub kick_count: KickCount,
}

/// Builds the root bus with the vsock function at [`slots::VSOCK`] and puts
/// its configuration and BAR windows on the buses.
pub fn wire(
    msi: Arc<dyn MsiSink>,
    workers: WorkerWiring,
    mem: &GuestMem,
    vsock: Box<dyn VirtioDevice>,
    io_bus: &mut Bus,
    mmio_bus: &mut Bus,
) -> Result<PciDevices, VmmError> {
    let (base, size) = BAR_WINDOW;
    let root = Arc::new(Mutex::new(PciRoot::new(
        HOST_BRIDGE_ID.0,
        HOST_BRIDGE_ID.1,
        base,
        size,
    )));
    let mem = GuestMemoryHandle::new(mem.clone());
    let function = Arc::new(Mutex::new(
        VirtioPciDevice::new(vsock, mem, msi, Arc::new(NoIrq))
            .map_err(|e| VmmError::Device(format!("virtio-vsock transport: {e}")))?
            .with_worker(
                &worker_name(slots::VSOCK),
                workers.ioevents,
                Some(workers.on_panic),
            )
            .counting_kicks_in(workers.kick_count),
    ));
    let shared: SharedFunction = function.clone();
    root.lock()
        .add_function(Some(slots::VSOCK), shared)
        .map_err(|e| VmmError::Device(format!("virtio-vsock on slot {}: {e}", slots::VSOCK)))?;
    io_bus.insert(
        Arc::new(Mutex::new(PciCam::new(root.clone()))),
        PCI_CAM_PORT,
        PCI_CAM_PORTS,
    )?;
    mmio_bus.insert(
        Arc::new(Mutex::new(PciBarWindow::new(root.clone()))),
        base,
        size,
    )?;
    Ok(PciDevices {
        root,
        vsock: function,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_window_is_inside_the_crs_window() {
        let (crs_base, crs_len) = crate::arch::layout::PCI_MMIO32;
        let (base, size) = BAR_WINDOW;
        assert!(base >= u64::from(crs_base));
        assert!(base + size <= u64::from(crs_base) + u64::from(crs_len));
    }
}
