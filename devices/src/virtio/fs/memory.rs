//! Guest memory as a vhost-user backend needs it: a table of file-backed,
//! shared regions (SET_MEM_TABLE) and ring addresses in the frontend's
//! address space (SET_VRING_ADDR).
//!
//! The backend maps each region's file descriptor itself, so every region
//! must be backed by a file mapped `MAP_SHARED` (the VMM should use one memfd
//! for all of guest RAM); anonymous memory cannot be shared this way.

use std::os::fd::AsRawFd;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::FsError;
use crate::virtio::GuestMemory;

/// Regions one SET_MEM_TABLE message may carry (the vhost-user
/// specification's baseline, which every backend accepts).
pub const MAX_MEM_REGIONS: usize = 8;

/// The SET_MEM_TABLE entries for `mem`. The raw file descriptors in the
/// result stay valid only while `mem` lives.
pub fn memory_table(mem: &GuestMemory) -> Result<Vec<VhostUserMemoryRegionInfo>, FsError> {
    let count = mem.num_regions();
    if count == 0 {
        return Err(FsError::NoMemory);
    }
    if count > MAX_MEM_REGIONS {
        return Err(FsError::TooManyRegions {
            count,
            max: MAX_MEM_REGIONS,
        });
    }
    mem.iter()
        .map(|region| {
            let guest_addr = region.start_addr().0;
            let file = region
                .file_offset()
                .ok_or(FsError::AnonymousMemory { guest_addr })?;
            if region.flags() & libc::MAP_SHARED == 0 {
                return Err(FsError::PrivateMemory { guest_addr });
            }
            Ok(VhostUserMemoryRegionInfo {
                guest_phys_addr: guest_addr,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
                mmap_offset: file.start(),
                mmap_handle: file.file().as_raw_fd(),
            })
        })
        .collect()
}

/// The frontend's virtual address of guest physical `addr`, as
/// SET_VRING_ADDR wants it (no IOMMU is negotiated, so the backend
/// translates through the `userspace_addr` of the memory table).
pub fn host_address(mem: &GuestMemory, queue: u16, addr: u64) -> Result<u64, FsError> {
    mem.get_host_address(GuestAddress(addr))
        .map(|p| p as u64)
        .map_err(|_| FsError::RingAddress { queue, addr })
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use vm_memory::FileOffset;

    use super::*;

    fn backing_file(size: u64) -> File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(size).unwrap();
        f
    }

    #[test]
    fn anonymous_memory_is_refused() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        assert!(matches!(
            memory_table(&mem),
            Err(FsError::AnonymousMemory { guest_addr: 0 })
        ));
    }

    #[test]
    fn file_backed_regions_share_one_file_at_their_offsets() {
        let file = backing_file(0x30000);
        let mem = GuestMemory::from_ranges_with_files([
            (
                GuestAddress(0),
                0x10000,
                Some(FileOffset::new(file.try_clone().unwrap(), 0)),
            ),
            (
                GuestAddress(0x100000),
                0x20000,
                Some(FileOffset::new(file, 0x10000)),
            ),
        ])
        .unwrap();
        let table = memory_table(&mem).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].guest_phys_addr, 0);
        assert_eq!(table[0].memory_size, 0x10000);
        assert_eq!(table[0].mmap_offset, 0);
        assert_eq!(table[1].guest_phys_addr, 0x100000);
        assert_eq!(table[1].memory_size, 0x20000);
        assert_eq!(table[1].mmap_offset, 0x10000);
        let hva = host_address(&mem, 0, 0x100010).unwrap();
        assert_eq!(hva, table[1].userspace_addr + 0x10);
        assert!(matches!(
            host_address(&mem, 2, 0x50000),
            Err(FsError::RingAddress {
                queue: 2,
                addr: 0x50000
            })
        ));
    }

    #[test]
    fn too_many_regions_are_refused() {
        let ranges: Vec<_> = (0..9u64)
            .map(|i| (GuestAddress(i * 0x10000), 0x1000))
            .collect();
        let mem = GuestMemory::from_ranges(&ranges).unwrap();
        assert!(matches!(
            memory_table(&mem),
            Err(FsError::TooManyRegions { count: 9, max: 8 })
        ));
    }
}
