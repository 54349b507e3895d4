//! Queue kicks as `KVM_IOEVENTFD`s: a guest write to a virtio queue's
//! notification address signals the device worker's eventfd inside KVM,
//! with no exit to this process (an exit costs about 47 us in the lab's
//! nested guest). The transports see it only as
//! `uvm_devices::ioevent::IoEventRegistry`.

use std::sync::{Arc, Weak};

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use uvm_devices::ioevent::IoEventRegistry;
use vmm_sys_util::eventfd::EventFd;

/// Registers kicks with the VM. It holds the VM weakly: a transport that
/// outlives the VM unregisters into nothing, with an error it logs.
pub struct KvmIoEvents {
    vm: Weak<VmFd>,
}

impl KvmIoEvents {
    /// A registry for `vm`.
    pub fn new(vm: &Arc<VmFd>) -> Self {
        KvmIoEvents {
            vm: Arc::downgrade(vm),
        }
    }

    fn vm(&self) -> std::io::Result<Arc<VmFd>> {
        self.vm
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the VM is gone"))
    }
}

impl IoEventRegistry for KvmIoEvents {
    fn register(&self, address: u64, fd: &EventFd) -> std::io::Result<()> {
        // No data match: Linux writes the queue index (16 bits), any
        // width or value at the address is a kick of that queue.
        self.vm()?
            .register_ioevent(fd, &IoEventAddress::Mmio(address), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn unregister(&self, address: u64, fd: &EventFd) -> std::io::Result<()> {
        self.vm()?
            .unregister_ioevent(fd, &IoEventAddress::Mmio(address), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_vm_is_an_error_not_a_panic() {
        let events = KvmIoEvents { vm: Weak::new() };
        let fd = EventFd::new(0).unwrap();
        assert!(events.register(0xc000_3000, &fd).is_err());
        assert!(events.unregister(0xc000_3000, &fd).is_err());
    }
}
