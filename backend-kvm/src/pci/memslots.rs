//! Guest memory that comes with a device (a virtio-pmem image's window):
//! KVM memory slots above the ones guest RAM uses, registered when the
//! device goes on the bus and deleted after the guest ejected it.

use std::collections::BTreeSet;

use kvm_bindings::{KVM_MEM_READONLY, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;

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
    /// Keeps the mapping alive (unmapped on drop).
    pub owner: Box<dyn Send>,
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
    pub fn map(&mut self, vm: &VmFd, memory: &ExtraMemory) -> Result<u32, String> {
        let slot = self.take();
        // SAFETY: the host range is a live mapping of `memory.len` bytes kept
        // alive by `memory.owner`, which the hub holds until after the slot is
        // deleted again (`unmap`) or the VM is gone.
        let result = unsafe { vm.set_user_memory_region(region(slot, memory, memory.len)) };
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
    /// there, and frees the number.
    pub fn unmap(&mut self, vm: Option<&VmFd>, slot: u32, memory: &ExtraMemory) {
        if let Some(vm) = vm {
            // SAFETY: a zero size deletes the slot; no host memory is referenced.
            let result = unsafe { vm.set_user_memory_region(region(slot, memory, 0)) };
            if let Err(e) = result {
                tracing::error!("deleting KVM memory slot {slot}: {e}");
                return;
            }
        }
        self.free.insert(slot);
    }
}
