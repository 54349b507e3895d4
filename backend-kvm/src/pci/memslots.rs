//! Guest memory that comes with a device (a virtio-pmem image's window):
//! KVM memory slots above the ones guest RAM uses, registered when the
//! device goes on the bus and deleted after the guest ejected it.
//!
//! If KVM refuses to delete a slot, the guest may still reach the host
//! memory behind it, so that memory must not be unmapped: the mapping is
//! leaked on purpose (`MappingOwner::leak`, logged at error) and stays
//! for the life of the process, which outlives the VM. The slot number
//! stays taken too.

use std::collections::BTreeSet;

use kvm_bindings::{KVM_MEM_READONLY, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;
use vmm_sys_util::errno;

/// First KVM memory slot number for device memory (guest RAM uses the
/// lower numbers).
const FIRST_DEVICE_MEMSLOT: u32 = 16;

/// Guest memory that belongs to a device: a host mapping the owner keeps
/// alive as long as this value lives.
pub struct ExtraMemory {
    /// Guest-physical base address.
    pub guest_address: u64,
    /// Host virtual address of the mapping.
    pub host_address: u64,
    /// Length in bytes (page aligned).
    pub len: u64,
    /// Whether the guest may only read it (a `KVM_MEM_READONLY` slot).
    pub read_only: bool,
    /// Keeps the mapping alive (unmapped on drop, unless leaked).
    pub owner: MappingOwner,
}

/// Whatever keeps a host mapping alive: it unmaps when dropped, unless
/// `MappingOwner::leak` was called.
pub struct MappingOwner(parking_lot::Mutex<Option<Box<dyn Send>>>);

impl MappingOwner {
    /// Wraps `owner`, whose drop unmaps the memory.
    pub fn new(owner: Box<dyn Send>) -> Self {
        MappingOwner(parking_lot::Mutex::new(Some(owner)))
    }

    /// Never unmaps the memory: the owner is forgotten (a deliberate leak,
    /// for a mapping KVM may still reference).
    fn leak(&self) {
        if let Some(owner) = self.0.lock().take() {
            std::mem::forget(owner);
        }
    }
}

/// The one KVM call memory slots need, behind a seam so tests can make it
/// fail.
pub trait SlotRegions {
    /// `KVM_SET_USER_MEMORY_REGION`.
    ///
    /// # Safety
    /// As [`VmFd::set_user_memory_region`]: a non-zero `region` must name a
    /// host mapping that stays valid until the slot is deleted or the VM is
    /// gone.
    unsafe fn set_region(&self, region: kvm_userspace_memory_region) -> Result<(), errno::Error>;
}

impl SlotRegions for VmFd {
    unsafe fn set_region(&self, region: kvm_userspace_memory_region) -> Result<(), errno::Error> {
        // SAFETY: the caller upholds the same contract (see the trait).
        unsafe { self.set_user_memory_region(region) }
    }
}

impl<T: SlotRegions + ?Sized> SlotRegions for std::sync::Arc<T> {
    unsafe fn set_region(&self, region: kvm_userspace_memory_region) -> Result<(), errno::Error> {
        // SAFETY: the caller upholds the same contract (see the trait).
        unsafe { (**self).set_region(region) }
    }
}

/// The device memory slot numbers of one VM.
#[derive(Debug, Default)]
pub struct MemSlots {
    free: BTreeSet<u32>,
    next: Option<u32>,
}

fn region(slot: u32, m: &ExtraMemory, size: u64) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region {
        slot,
        flags: if m.read_only { KVM_MEM_READONLY } else { 0 },
        guest_phys_addr: m.guest_address,
        memory_size: size,
        userspace_addr: m.host_address,
    }
}

impl MemSlots {
    fn take(&mut self) -> u32 {
        if let Some(s) = self.free.pop_first() {
            return s;
        }
        let s = self.next.unwrap_or(FIRST_DEVICE_MEMSLOT);
        self.next = Some(s + 1);
        s
    }

    /// Registers `memory` with `vm` at a fresh slot; returns the slot.
    pub fn map<V: SlotRegions>(&mut self, vm: &V, memory: &ExtraMemory) -> Result<u32, String> {
        let slot = self.take();
        // SAFETY: the host range is a live mapping of `memory.len` bytes kept
        // alive by `memory.owner`, which the hub holds until after the slot is
        // deleted again (`unmap`) or the VM is gone.
        let result = unsafe { vm.set_region(region(slot, memory, memory.len)) };
        match result {
            Ok(()) => Ok(slot),
            Err(e) => {
                self.free.insert(slot);
                Err(format!(
                    "KVM_SET_USER_MEMORY_REGION for device memory at {:#x}: {e}",
                    memory.guest_address
                ))
            }
        }
    }

    /// Deletes `slot` (holding `memory`) from `vm`, if the VM is still
    /// there, and frees the number. If KVM refuses the delete, the slot
    /// number stays taken and `memory`'s mapping is leaked (never
    /// unmapped): the guest could still reach it.
    pub fn unmap<V: SlotRegions>(&mut self, vm: Option<&V>, slot: u32, memory: &ExtraMemory) {
        if let Some(vm) = vm {
            // SAFETY: a zero size deletes the slot; no host memory is referenced.
            let result = unsafe { vm.set_region(region(slot, memory, 0)) };
            if let Err(e) = result {
                memory.owner.leak();
                tracing::error!(
                    slot,
                    guest_address = memory.guest_address,
                    len = memory.len,
                    "deleting KVM memory slot failed: {e}; its host memory is leaked, not unmapped"
                );
                return;
            }
        }
        self.free.insert(slot);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A VM whose slot deletes fail with EBUSY.
    struct FailingDelete;

    impl SlotRegions for FailingDelete {
        unsafe fn set_region(&self, r: kvm_userspace_memory_region) -> Result<(), errno::Error> {
            if r.memory_size == 0 {
                Err(errno::Error::new(libc::EBUSY))
            } else {
                Ok(())
            }
        }
    }

    /// Stands for the host mapping: notes when it is unmapped (dropped).
    struct Mapping(Arc<AtomicBool>);

    impl Drop for Mapping {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn memory(unmapped: &Arc<AtomicBool>) -> ExtraMemory {
        ExtraMemory {
            guest_address: 0x1_0000_0000,
            host_address: 0x7000_0000_0000,
            len: 2 << 20,
            read_only: false,
            owner: MappingOwner::new(Box::new(Mapping(unmapped.clone()))),
        }
    }

    #[test]
    fn a_failed_slot_delete_keeps_the_host_mapping() {
        let unmapped = Arc::new(AtomicBool::new(false));
        let mut slots = MemSlots::default();
        let m = memory(&unmapped);
        let slot = slots.map(&FailingDelete, &m).unwrap();
        slots.unmap(Some(&FailingDelete), slot, &m);
        // The hub drops the device's memory after `unmap`, as here.
        drop(m);
        assert!(
            !unmapped.load(Ordering::SeqCst),
            "host memory unmapped while KVM slot {slot} may still map it"
        );
        // The slot number stays taken.
        let other = memory(&Arc::new(AtomicBool::new(false)));
        assert_ne!(slots.map(&FailingDelete, &other).unwrap(), slot);
    }

    /// A VM whose slot calls all succeed.
    struct Working;

    impl SlotRegions for Working {
        unsafe fn set_region(&self, _: kvm_userspace_memory_region) -> Result<(), errno::Error> {
            Ok(())
        }
    }

    #[test]
    fn a_deleted_slot_lets_the_mapping_go_and_frees_the_number() {
        let unmapped = Arc::new(AtomicBool::new(false));
        let mut slots = MemSlots::default();
        let m = memory(&unmapped);
        let slot = slots.map(&Working, &m).unwrap();
        slots.unmap(Some(&Working), slot, &m);
        drop(m);
        assert!(unmapped.load(Ordering::SeqCst));
        let again = memory(&Arc::new(AtomicBool::new(false)));
        assert_eq!(slots.map(&Working, &again).unwrap(), slot);
    }
}
