//! First-fit allocation of naturally aligned BARs inside one MMIO window.

use std::collections::BTreeMap;

/// Why a BAR could not be allocated or freed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarAllocError {
    /// The size is zero or not a power of two.
    #[error("invalid BAR size {0:#x}")]
    InvalidSize(u64),
    /// No free, aligned range of that size is left in the window.
    #[error("no room for a BAR of {0:#x} bytes")]
    Exhausted(u64),
    /// Nothing was allocated at this address.
    #[error("no BAR allocated at {0:#x}")]
    NotAllocated(u64),
}

/// Allocates BAR ranges in `[base, base + size)`; alignment is the BAR size.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    base: u64,
    size: u64,
    used: BTreeMap<u64, u64>,
}

impl BarAllocator {
    /// An allocator over the window `[base, base + size)`.
    pub fn new(base: u64, size: u64) -> Self {
        BarAllocator {
            base,
            size,
            used: BTreeMap::new(),
        }
    }

    /// The window's base address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The window's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Allocates `size` bytes aligned to `size`; returns the address.
    pub fn allocate(&mut self, size: u64) -> Result<u64, BarAllocError> {
        if size == 0 || !size.is_power_of_two() {
            return Err(BarAllocError::InvalidSize(size));
        }
        let end = self.base.saturating_add(self.size);
        let align = |a: u64| a.checked_add(size - 1).map(|v| v & !(size - 1));
        let mut candidate = align(self.base).ok_or(BarAllocError::Exhausted(size))?;
        for (&start, &len) in &self.used {
            let cand_end = candidate
                .checked_add(size)
                .ok_or(BarAllocError::Exhausted(size))?;
            if cand_end <= start {
                break;
            }
            if start + len > candidate {
                candidate = align(start + len).ok_or(BarAllocError::Exhausted(size))?;
            }
        }
        match candidate.checked_add(size) {
            Some(e) if e <= end => {
                self.used.insert(candidate, size);
                Ok(candidate)
            }
            _ => Err(BarAllocError::Exhausted(size)),
        }
    }

    /// Frees the range allocated at `address`.
    pub fn free(&mut self, address: u64) -> Result<(), BarAllocError> {
        self.used
            .remove(&address)
            .map(|_| ())
            .ok_or(BarAllocError::NotAllocated(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_first_fit_and_reuse() {
        let mut a = BarAllocator::new(0xe000_1000, 0x10_0000);
        let x = a.allocate(0x1000).unwrap();
        assert_eq!(x, 0xe000_1000);
        let y = a.allocate(0x4000).unwrap();
        assert_eq!(y, 0xe000_4000);
        let z = a.allocate(0x1000).unwrap();
        assert_eq!(z, 0xe000_2000);
        a.free(y).unwrap();
        assert_eq!(a.free(y), Err(BarAllocError::NotAllocated(y)));
        assert_eq!(a.allocate(0x4000).unwrap(), 0xe000_4000);
        assert_eq!(
            a.allocate(0x20_0000),
            Err(BarAllocError::Exhausted(0x20_0000))
        );
        assert_eq!(a.allocate(3), Err(BarAllocError::InvalidSize(3)));
    }
}
