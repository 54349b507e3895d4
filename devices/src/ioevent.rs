//! Queue notifications as the device models see them: an eventfd per queue
//! that the hypervisor signals when the guest writes the queue's
//! notification address, with no exit to the VMM.
//!
//! The virtio-pci transport asks an [`IoEventRegistry`] to tie each
//! enabled queue's eventfd to its notification address when the driver
//! sets DRIVER_OK, and to untie it on reset, unplug and stop. The backend
//! implements it with `KVM_IOEVENTFD`; tests use [`RecordingIoEvents`].

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use parking_lot::Mutex;
use vmm_sys_util::eventfd::EventFd;

/// Ties eventfds to guest MMIO addresses.
pub trait IoEventRegistry: Send + Sync {
    /// From now on a guest write of any width and value to `address`
    /// signals `fd` instead of reaching the VMM as an MMIO exit.
    fn register(&self, address: u64, fd: &EventFd) -> io::Result<()>;
    /// Unties `fd` from `address`; guest writes there exit again.
    fn unregister(&self, address: u64, fd: &EventFd) -> io::Result<()>;
}

/// An [`IoEventRegistry`] that records what is registered, for tests. It
/// refuses a second registration of one address, as KVM does.
#[derive(Debug, Default)]
pub struct RecordingIoEvents {
    registered: Mutex<BTreeMap<u64, RawFd>>,
}

impl RecordingIoEvents {
    /// The registered addresses, ascending.
    pub fn addresses(&self) -> Vec<u64> {
        self.registered.lock().keys().copied().collect()
    }

    /// The fd registered at `address`, if any.
    pub fn fd_at(&self, address: u64) -> Option<RawFd> {
        self.registered.lock().get(&address).copied()
    }
}

impl IoEventRegistry for RecordingIoEvents {
    fn register(&self, address: u64, fd: &EventFd) -> io::Result<()> {
        let mut registered = self.registered.lock();
        if registered.contains_key(&address) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        registered.insert(address, fd.as_raw_fd());
        Ok(())
    }

    fn unregister(&self, address: u64, fd: &EventFd) -> io::Result<()> {
        let mut registered = self.registered.lock();
        match registered.get(&address) {
            Some(raw) if *raw == fd.as_raw_fd() => {
                registered.remove(&address);
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_registry_refuses_doubles_and_strangers() {
        let events = RecordingIoEvents::default();
        let a = EventFd::new(0).unwrap();
        let b = EventFd::new(0).unwrap();
        events.register(0x1000, &a).unwrap();
        assert!(events.register(0x1000, &b).is_err());
        assert!(events.unregister(0x1000, &b).is_err());
        events.unregister(0x1000, &a).unwrap();
        assert!(events.addresses().is_empty());
    }
}
