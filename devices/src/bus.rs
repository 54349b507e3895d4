//! Address-range buses: a vCPU exit on a port or MMIO address is routed to
//! the device that owns the range, with the offset inside the range.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// A device reachable through a [`Bus`].
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `offset` inside the device's range.
    /// Bytes the device does not define read as `0xff`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset` inside the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else drives it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a range could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The range has zero length or wraps around the address space.
    #[error("invalid range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Start of the range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// The range overlaps one already on the bus.
    #[error("range {base:#x}+{len:#x} overlaps {other_base:#x}+{other_len:#x}")]
    Overlap {
        /// Start of the new range.
        base: u64,
        /// Its length.
        len: u64,
        /// Start of the range it overlaps.
        other_base: u64,
        /// Length of that range.
        other_len: u64,
    },
    /// No range starts at this address.
    #[error("no range starts at {0:#x}")]
    NotFound(u64),
}

struct Range {
    len: u64,
    device: SharedDevice,
}

/// Routes accesses to devices by address range.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Range>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Bus::default()
    }

    /// Puts `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let before = self.ranges.range(..end).next_back();
        if let Some((&other_base, other)) = before
            && other_base + other.len > base
        {
            return Err(BusError::Overlap {
                base,
                len,
                other_base,
                other_len: other.len,
            });
        }
        self.ranges.insert(base, Range { len, device });
        Ok(())
    }

    /// Removes the range starting at `base` and returns its device.
    pub fn remove(&mut self, base: u64) -> Result<SharedDevice, BusError> {
        self.ranges
            .remove(&base)
            .map(|r| r.device)
            .ok_or(BusError::NotFound(base))
    }

    /// The device owning `addr` and the offset of `addr` in its range.
    fn resolve(&self, addr: u64) -> Option<(&SharedDevice, u64)> {
        let (&base, range) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset < range.len).then_some((&range.device, offset))
    }

    /// Routes a read; returns false (and fills `data` with `0xff`) if no device owns `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((device, offset)) => {
                lock(device).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Routes a write; returns false if no device owns `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((device, offset)) => {
                lock(device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device.
fn lock(device: &SharedDevice) -> MutexGuard<'_, dyn BusDevice + 'static> {
    device.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_and_offset() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        assert!(bus.write(0x3fb, &[1]));
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b, [5]);
        assert!(!bus.read(0x400, &mut b));
        assert_eq!(b, [0xff]);
        assert!(!bus.write(0x3f7, &[1]));
        assert_eq!(dev.lock().writes, vec![(3, vec![1])]);
    }

    #[test]
    fn refuses_overlaps_and_empty_ranges() {
        let dev: SharedDevice = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        assert!(matches!(
            bus.insert(dev.clone(), 0x108, 4),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0xf8, 9),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0x200, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(dev.clone(), 0x110, 4).unwrap();
        bus.remove(0x100).unwrap();
        assert!(matches!(bus.remove(0x100), Err(BusError::NotFound(0x100))));
        bus.insert(dev, 0x100, 0x10).unwrap();
    }
}
