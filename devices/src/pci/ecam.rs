//! Enhanced configuration access (ECAM, the memory-mapped window an MCFG
//! table announces) for bus 0.

use std::sync::Arc;

use parking_lot::Mutex;

use super::root::PciRoot;
use crate::bus::BusDevice;

/// Size of the ECAM window for one bus (32 devices x 8 functions x 4 KiB).
pub const ECAM_SIZE: u64 = 32 * 8 * 4096;

/// The ECAM window of bus 0 as an MMIO [`BusDevice`] of [`ECAM_SIZE`] bytes.
pub struct PciEcam {
    root: Arc<Mutex<PciRoot>>,
}

impl PciEcam {
    /// An ECAM window over `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciEcam { root }
    }
}

/// Splits an ECAM offset into device, function and register, for naturally
/// aligned 1/2/4-byte accesses inside the window.
fn decode(offset: u64, len: usize) -> Option<(u8, u8, u16)> {
    if !matches!(len, 1 | 2 | 4) || !offset.is_multiple_of(len as u64) || offset >= ECAM_SIZE {
        return None;
    }
    Some((
        ((offset >> 15) & 0x1f) as u8,
        ((offset >> 12) & 0x7) as u8,
        (offset & 0xfff) as u16,
    ))
}

impl BusDevice for PciEcam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match decode(offset, data.len()) {
            Some((dev, func, reg)) => self.root.lock().config_read(0, dev, func, reg, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match decode(offset, data.len()) {
            Some((dev, func, reg)) => self.root.lock().config_write(0, dev, func, reg, data),
            None => tracing::debug!(offset, len = data.len(), "ignoring bad ECAM write"),
        }
    }
}
