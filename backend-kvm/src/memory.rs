//! Guest memory: shared mappings of one memfd, registered with KVM as memory slots, and
//! how much of them is resident on the host.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use kvm_ioctls::VmFd;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};

use crate::arch::layout;
use crate::error::VmmError;

/// The guest memory type of this VMM.
pub type GuestMem = GuestMemoryMmap<()>;

/// Maps `bytes` of guest RAM in the PC layout ([`layout::ram_ranges`]).
///
/// The RAM is one memfd mapped shared, so that a vhost-user backend (the
/// virtio-fs daemon) can map the same pages; it behaves like anonymous
/// memory otherwise (zero-filled, allocated on first touch).
pub fn create(bytes: u64) -> Result<GuestMem, VmmError> {
    let ranges = layout::ram_ranges(bytes);
    let total: u64 = ranges.iter().map(|(_, len)| len).sum();
    let file = memfd(total)?;
    let mut offset = 0u64;
    let mut regions = Vec::with_capacity(ranges.len());
    for (start, len) in ranges {
        let size = usize::try_from(len)
            .map_err(|_| VmmError::Memory(format!("{len} bytes do not fit in usize")))?;
        regions.push((
            GuestAddress(start),
            size,
            Some(FileOffset::from_arc(file.clone(), offset)),
        ));
        offset += len;
    }
    GuestMemoryMmap::from_ranges_with_files(&regions).map_err(|e| VmmError::Memory(e.to_string()))
}

/// A memory file of `len` bytes.
fn memfd(len: u64) -> Result<Arc<File>, VmmError> {
    // SAFETY: the name is a NUL-terminated string literal; memfd_create
    // returns a new descriptor (or -1) and touches no other memory.
    let fd = unsafe { libc::memfd_create(c"uvm-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(VmmError::io("memfd_create for guest RAM")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a fresh descriptor this function owns from here on.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)
        .map_err(VmmError::io("sizing the guest RAM memfd"))?;
    Ok(Arc::new(file))
}

fn host_range(region: &<GuestMem as GuestMemoryBackend>::R) -> Result<(u64, u64), VmmError> {
    let host = region
        .get_host_address(MemoryRegionAddress(0))
        .map_err(|e| VmmError::Memory(e.to_string()))?;
    Ok((host as u64, region.len()))
}

/// Registers every region of `mem` as a KVM memory slot.
pub fn register(vm: &VmFd, mem: &GuestMem) -> Result<(), VmmError> {
    for (slot, region) in mem.iter().enumerate() {
        let (host, len) = host_range(region)?;
        let slot_region = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: len,
            userspace_addr: host,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, which the
        // VM keeps alive (in the same `Arc`) for as long as the VM fd exists.
        unsafe { vm.set_user_memory_region(slot_region) }
            .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// Bytes of `mem` resident on the host (`mincore(2)` over each mapping).
pub fn resident_bytes(mem: &GuestMem) -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
    let mut total = 0u64;
    for region in mem.iter() {
        let (host, len) = host_range(region).ok()?;
        let pages = usize::try_from(len.div_ceil(page)).ok()?;
        let mut vec = vec![0u8; pages];
        // SAFETY: [host, host+len) is a mapping owned by `mem`, page aligned
        // (mmap result), and `vec` has one byte per page of it.
        let rc =
            unsafe { libc::mincore(host as *mut libc::c_void, len as usize, vec.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        total += vec.iter().filter(|b| *b & 1 != 0).count() as u64 * page;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;

    #[test]
    fn resident_grows_when_touched() {
        let mem = create(16 << 20).unwrap();
        let before = resident_bytes(&mem).unwrap();
        mem.write_slice(&[1u8; 8192], GuestAddress(0x10000))
            .unwrap();
        let after = resident_bytes(&mem).unwrap();
        assert!(after >= before + 8192, "{before} -> {after}");
    }
}
