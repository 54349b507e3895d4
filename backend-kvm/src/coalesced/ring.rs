//! The coalesced-I/O ring KVM shares with the VMM: one page per VM, mapped
//! from a vCPU fd at `KVM_COALESCED_MMIO_PAGE_OFFSET` pages. KVM appends
//! an entry (address, length, up to 8 data bytes, port or memory) at
//! `last` for each write to a registered zone and moves `last` on; the VMM
//! consumes from `first` and moves `first` on. When the ring is full KVM
//! exits for the write instead (`virt/kvm/coalesced_mmio.c`), so no write
//! is ever lost, only handled later.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use kvm_bindings::{KVM_COALESCED_MMIO_PAGE_OFFSET, kvm_coalesced_mmio, kvm_coalesced_mmio_ring};

/// One write KVM held: where, and the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldWrite {
    /// The port (`pio`) or guest-physical address.
    pub addr: u64,
    /// Whether it was a port write.
    pub pio: bool,
    /// How many bytes of `data` were written (1 to 8).
    pub len: usize,
    /// The bytes.
    pub data: [u8; 8],
}

impl HeldWrite {
    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// Where the ring lives: KVM's shared page, or (tests) any page-sized buffer.
pub struct Ring {
    page: NonNull<kvm_coalesced_mmio_ring>,
    /// How many entries fit after the header.
    capacity: u32,
    /// The mapping's length, to unmap; 0 when the memory is not a mapping.
    mapped_len: usize,
}

// SAFETY: the ring is plain shared memory; `first` and `last` are only
// accessed atomically, and entries are read only by the consumer, which
// the owner ([`super::CoalescedWrites`]) serializes with a lock.
unsafe impl Send for Ring {}
// SAFETY: as for `Send`.
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps the ring page of the VM that `vcpu_fd` belongs to.
    pub fn map(vcpu_fd: std::os::fd::RawFd) -> std::io::Result<Ring> {
        // SAFETY: sysconf has no memory effects.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_size = usize::try_from(page_size)
            .ok()
            .filter(|p| *p >= 4096)
            .ok_or_else(std::io::Error::last_os_error)?;
        let offset = libc::off_t::try_from(KVM_COALESCED_MMIO_PAGE_OFFSET as usize * page_size)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared mapping of one page of the vCPU fd; KVM
        // serves that offset with the VM's coalesced ring page. The result
        // is checked before use, and unmapped once in `Drop`.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu_fd,
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let page = NonNull::new(addr.cast::<kvm_coalesced_mmio_ring>())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        Ok(Ring {
            page,
            capacity: Self::capacity_of(page_size),
            mapped_len: page_size,
        })
    }

    /// Entries that fit in a ring page of `page_size` bytes (KVM's
    /// `KVM_COALESCED_MMIO_MAX`).
    pub fn capacity_of(page_size: usize) -> u32 {
        let entries = page_size.saturating_sub(size_of::<kvm_coalesced_mmio_ring>())
            / size_of::<kvm_coalesced_mmio>();
        u32::try_from(entries).unwrap_or(u32::MAX)
    }

    /// A ring over `page`, which is not unmapped on drop.
    ///
    /// # Safety
    /// `page` must point to at least `page_size` bytes, aligned for
    /// `kvm_coalesced_mmio_ring`, valid for reads and writes for as long
    /// as the ring lives.
    #[cfg(test)]
    pub unsafe fn over(page: NonNull<kvm_coalesced_mmio_ring>, page_size: usize) -> Ring {
        Ring {
            page,
            capacity: Self::capacity_of(page_size),
            mapped_len: 0,
        }
    }

    /// How many entries fit.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    fn index(&self, which: usize) -> &AtomicU32 {
        let base = self.page.as_ptr().cast::<u32>();
        // SAFETY: `first` and `last` are the header's two aligned u32s
        // (`which` is 0 or 1), inside the page for the ring's life; KVM
        // and this process access them concurrently, hence atomically.
        unsafe { AtomicU32::from_ptr(base.add(which)) }
    }

    fn first(&self) -> &AtomicU32 {
        self.index(0)
    }

    fn last(&self) -> &AtomicU32 {
        self.index(1)
    }

    /// Whether KVM holds no write (a cheap check without the owner's lock).
    pub fn is_empty(&self) -> bool {
        self.first().load(Ordering::Acquire) == self.last().load(Ordering::Acquire)
    }

    /// Takes the oldest held write. Only one consumer at a time.
    pub fn pop(&self) -> Option<HeldWrite> {
        let first = self.first().load(Ordering::Relaxed) % self.capacity.max(1);
        if first == self.last().load(Ordering::Acquire) % self.capacity.max(1) {
            return None;
        }
        // SAFETY: `first` is below the capacity, so the entry lies inside
        // the page; KVM finished writing it before it moved `last` past it
        // (the acquire load above pairs with its write barrier).
        let entry: kvm_coalesced_mmio = unsafe {
            let header = self.page.as_ptr();
            let entries =
                std::ptr::addr_of_mut!((*header).coalesced_mmio).cast::<kvm_coalesced_mmio>();
            std::ptr::read_volatile(entries.add(first as usize))
        };
        self.first()
            .store((first + 1) % self.capacity, Ordering::Release);
        // SAFETY: both union fields are a u32; any value is valid.
        let pio = unsafe { entry.__bindgen_anon_1.pio } != 0;
        Some(HeldWrite {
            addr: entry.phys_addr,
            pio,
            len: (entry.len as usize).clamp(1, 8),
            data: entry.data,
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.mapped_len > 0 {
            // SAFETY: the mapping made in `map`, unmapped once, here.
            unsafe { libc::munmap(self.page.as_ptr().cast(), self.mapped_len) };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page-sized, suitably aligned buffer standing in for KVM's page,
    /// with a producer that appends the way KVM does.
    pub(crate) struct FakePage {
        words: Vec<u64>,
    }

    impl FakePage {
        pub(crate) fn new() -> FakePage {
            FakePage {
                words: vec![0; 4096 / 8],
            }
        }

        pub(crate) fn ring(&mut self) -> Ring {
            let page = NonNull::new(self.words.as_mut_ptr().cast()).unwrap();
            // SAFETY: 4096 bytes, 8-aligned, alive as long as the test's page.
            unsafe { Ring::over(page, 4096) }
        }

        /// Appends a write like KVM; false when the ring is full.
        pub(crate) fn push(&mut self, addr: u64, pio: bool, bytes: &[u8]) -> bool {
            let capacity = Ring::capacity_of(4096);
            let header = self.words.as_mut_ptr().cast::<kvm_coalesced_mmio_ring>();
            // SAFETY: inside the buffer, as KVM's producer writes it.
            unsafe {
                let first = (*header).first;
                let last = (*header).last;
                if (last + 1) % capacity == first {
                    return false;
                }
                let mut entry = kvm_coalesced_mmio {
                    phys_addr: addr,
                    len: bytes.len() as u32,
                    ..Default::default()
                };
                entry.__bindgen_anon_1.pio = u32::from(pio);
                entry.data[..bytes.len()].copy_from_slice(bytes);
                let entries =
                    std::ptr::addr_of_mut!((*header).coalesced_mmio).cast::<kvm_coalesced_mmio>();
                entries.add(last as usize).write(entry);
                (*header).last = (last + 1) % capacity;
            }
            true
        }
    }

    #[test]
    fn writes_come_out_in_order_and_the_ring_wraps() {
        let mut page = FakePage::new();
        let ring = page.ring();
        assert_eq!(
            ring.capacity(),
            170,
            "as KVM_COALESCED_MMIO_MAX on 4 KiB pages"
        );
        assert!(ring.is_empty());
        assert_eq!(ring.pop(), None);
        let mut pushed = 0u32;
        for round in 0..3 {
            while page.push(0x3f8, true, &[(pushed % 251) as u8]) {
                pushed += 1;
            }
            assert_eq!(pushed, 169 * (round + 1), "one slot stays free");
            let ring = page.ring();
            for i in 0..169 {
                let w = ring.pop().unwrap();
                assert_eq!(w.addr, 0x3f8);
                assert!(w.pio);
                assert_eq!(w.bytes(), [((169 * round + i) % 251) as u8]);
            }
            assert!(ring.is_empty());
        }
        page.push(0xcf8, true, &0x8000_0010u32.to_le_bytes());
        let w = page.ring().pop().unwrap();
        assert_eq!(w.bytes(), 0x8000_0010u32.to_le_bytes());
    }
}
