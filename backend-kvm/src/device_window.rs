//! [`DeviceWindow`]: guest-physical address space for device memory (the
//! virtio-pmem images' windows), above guest RAM: from
//! [`crate::arch::layout::device_memory_base`] up to
//! [`crate::arch::layout::DEVICE_MEMORY_END`]. Ranges are handed out first
//! fit, lowest address first, and given back when the device is gone.

use std::collections::BTreeMap;

use crate::arch::layout;

/// The free and used ranges of a VM's device memory window.
#[derive(Debug)]
pub struct DeviceWindow {
    start: u64,
    end: u64,
    /// Ranges in use: start -> length.
    used: BTreeMap<u64, u64>,
}

impl DeviceWindow {
    /// The window of a VM with `ram_bytes` of RAM.
    pub fn for_ram(ram_bytes: u64) -> Self {
        DeviceWindow::new(
            layout::device_memory_base(ram_bytes),
            layout::DEVICE_MEMORY_END,
        )
    }

    /// A window over `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        DeviceWindow {
            start,
            end,
            used: BTreeMap::new(),
        }
    }

    /// The window as `[start, end)`.
    pub fn bounds(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// Takes the lowest free `len`-byte range; its start, or `None` if no
    /// hole is large enough.
    pub fn allocate(&mut self, len: u64) -> Option<u64> {
        let mut candidate = self.start;
        for (&s, &l) in &self.used {
            if candidate.checked_add(len)? <= s {
                break;
            }
            candidate = candidate.max(s.checked_add(l)?);
        }
        let fits = candidate.checked_add(len)? <= self.end;
        if fits {
            self.used.insert(candidate, len);
        }
        fits.then_some(candidate)
    }

    /// Gives back the range starting at `start`.
    pub fn free(&mut self, start: u64) {
        self.used.remove(&start);
    }

    /// Gives back every range (the VM stopped).
    pub fn clear(&mut self) {
        self.used.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_fills_holes_in_order() {
        let mut w = DeviceWindow::new(0x1000, 0x10000);
        assert_eq!(w.allocate(0x2000), Some(0x1000));
        assert_eq!(w.allocate(0x1000), Some(0x3000));
        assert_eq!(w.allocate(0x1000), Some(0x4000));
        w.free(0x3000);
        w.free(0x4000);
        assert_eq!(w.allocate(0x1000), Some(0x3000), "the lowest hole first");
        assert_eq!(w.allocate(0x3000), Some(0x4000));
        assert_eq!(w.allocate(0x10000), None);
        w.clear();
        assert_eq!(w.allocate(0xf000), Some(0x1000));
    }
}
