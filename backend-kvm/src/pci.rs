//! The PCI root bus of a VM and its virtio-pci functions.
//!
//! Wiring (see `uvm_devices::pci`): a [`PciRoot`] shared by a [`PciCam`] on
//! the port bus at `0xcf8` (configuration mechanism #1; no ECAM/MCFG: the
//! virtio capabilities all sit in the first 256 bytes, which mechanism #1
//! reaches) and a [`PciBarWindow`] on the MMIO bus over [`BAR_WINDOW`],
//! which lies inside the DSDT's `PCI0._CRS` 32-bit window
//! ([`crate::layout::PCI_MMIO32`]). The root assigns BAR addresses before
//! boot, like firmware, and Linux keeps them.
//!
//! Interrupts: MSI-X messages go straight to KVM with `KVM_SIGNAL_MSI`
//! ([`KvmMsi`]): no GSI routing table to keep in step with the guest's
//! MSI-X table. INTx is not routed (the DSDT has no `_PRT`; Linux's
//! virtio-pci driver uses the MSI-X the transport offers).
//!
//! Queue notifications arrive as MMIO exits on the notification region of
//! BAR 0 (one exit per notification; vsock traffic is light enough that
//! ioeventfds are not worth their bookkeeping yet).
//!
//! Slot map: 0 host bridge, [`VSOCK_SLOT`] virtio-vsock.

use std::sync::{Arc, Weak};

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use parking_lot::Mutex;
use uvm_devices::bus::Bus;
use uvm_devices::interrupt::{MsiSink, NoIrq};
use uvm_devices::pci::{PciBarWindow, PciCam, PciRoot, SharedFunction};
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::{GuestMemoryHandle, VirtioDevice};

use crate::error::VmmError;
use crate::memory::GuestMem;

/// Port of the configuration address register (mechanism #1).
pub const PCI_CAM_PORT: u64 = 0xcf8;
/// Ports of mechanism #1 (`0xcf8..=0xcff`).
pub const PCI_CAM_PORTS: u64 = 8;
/// The window BARs are assigned from: base and size (inside the DSDT's
/// `_CRS` window [`crate::layout::PCI_MMIO32`]).
pub const BAR_WINDOW: (u64, u64) = (0xc000_0000, 0x1000_0000);
/// Vendor and device id of the host bridge (Intel Q35 MCH, which Linux
/// knows needs no quirks).
pub const HOST_BRIDGE_ID: (u16, u16) = (0x8086, 0x29c0);
/// The fixed slot of the virtio-vsock function.
pub const VSOCK_SLOT: u8 = 1;

/// An [`MsiSink`] that delivers messages with `KVM_SIGNAL_MSI`.
///
/// It holds the VM weakly: once the VM is gone, delivery fails with an
/// error (logged by the transport) instead of keeping the VM alive.
pub struct KvmMsi {
    vm: Weak<VmFd>,
}

impl KvmMsi {
    /// A sink delivering to `vm`.
    pub fn new(vm: &Arc<VmFd>) -> Self {
        KvmMsi {
            vm: Arc::downgrade(vm),
        }
    }
}

/// The `kvm_msi` for a message with this address and data.
pub fn msi_message(address: u64, data: u32) -> kvm_msi {
    kvm_msi {
        address_lo: address as u32,
        address_hi: (address >> 32) as u32,
        data,
        ..Default::default()
    }
}

impl MsiSink for KvmMsi {
    fn signal(&self, address: u64, data: u32) -> std::io::Result<()> {
        let vm = self
            .vm
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the VM is gone"))?;
        match vm.signal_msi(msi_message(address, data)) {
            // 0: the guest has the interrupt blocked (masked at the APIC);
            // KVM dropped it, as real hardware would.
            Ok(_) => Ok(()),
            Err(e) => Err(std::io::Error::from_raw_os_error(e.errno())),
        }
    }
}

/// The VM's PCI devices, for the control thread and the managers.
pub struct PciDevices {
    /// The root bus.
    pub root: Arc<Mutex<PciRoot>>,
    /// The virtio-vsock function.
    pub vsock: Arc<Mutex<VirtioPciDevice>>,
}

/// Builds the root bus with the vsock function at [`VSOCK_SLOT`] and puts
/// its configuration and BAR windows on the buses.
pub fn wire(
    msi: Arc<dyn MsiSink>,
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
            .map_err(|e| VmmError::Device(format!("virtio-vsock transport: {e}")))?,
    ));
    let shared: SharedFunction = function.clone();
    root.lock()
        .add_function(Some(VSOCK_SLOT), shared)
        .map_err(|e| VmmError::Device(format!("virtio-vsock on slot {VSOCK_SLOT}: {e}")))?;
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
    fn msi_message_splits_the_address() {
        let m = msi_message(0x1_fee0_1000, 0x4021);
        assert_eq!(m.address_lo, 0xfee0_1000);
        assert_eq!(m.address_hi, 1);
        assert_eq!(m.data, 0x4021);
        assert_eq!(m.flags, 0);
    }

    #[test]
    fn msi_to_a_gone_vm_is_an_error() {
        let sink = KvmMsi { vm: Weak::new() };
        assert!(sink.signal(0xfee0_0000, 0x30).is_err());
    }

    #[test]
    fn bar_window_is_inside_the_crs_window() {
        let (crs_base, crs_len) = crate::layout::PCI_MMIO32;
        let (base, size) = BAR_WINDOW;
        assert!(base >= u64::from(crs_base));
        assert!(base + size <= u64::from(crs_base) + u64::from(crs_len));
    }
}
