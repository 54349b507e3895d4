//! Every KVM interrupt adapter of the VMM: legacy lines as irqfds
//! ([`irq_line`]: the 8250's IRQ 4, the ACPI SCI) and MSI-X messages of PCI
//! functions delivered with `KVM_SIGNAL_MSI` ([`KvmMsi`]: no GSI routing
//! table to keep in step with the guest's MSI-X tables). The device models
//! see them only as `uvm_devices::interrupt` traits.

use std::sync::{Arc, Weak};

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use uvm_devices::interrupt::{IrqLine, MsiSink};
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;

/// An [`IrqLine`] backed by an irqfd.
struct IrqFd(EventFd);

impl IrqLine for IrqFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// A legacy interrupt line for `gsi` of `vm`, backed by an irqfd.
pub fn irq_line(vm: &VmFd, gsi: u32) -> Result<Arc<dyn IrqLine>, VmmError> {
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io("eventfd"))?;
    vm.register_irqfd(&fd, gsi)
        .map_err(VmmError::kvm("KVM_IRQFD"))?;
    Ok(Arc::new(IrqFd(fd)))
}

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
}
