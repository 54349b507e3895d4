//! Configuration access mechanism #1: ports `0xcf8..=0xcff`.

use std::sync::Arc;

use parking_lot::Mutex;

use super::root::PciRoot;
use super::{le_read, le_write};
use crate::bus::BusDevice;

const ENABLE: u32 = 1 << 31;

/// The `0xcf8` address register and `0xcfc` data window, as one 8-port
/// [`BusDevice`] (insert at port `0xcf8`, length 8).
pub struct PciCam {
    root: Arc<Mutex<PciRoot>>,
    address: u32,
}

impl PciCam {
    /// A mechanism #1 device over `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciCam { root, address: 0 }
    }

    /// Bus, device, function and register offset selected by the address
    /// register, if its enable bit is set.
    fn selected(&self) -> Option<(u8, u8, u8, u16)> {
        let a = self.address;
        (a & ENABLE != 0).then_some((
            (a >> 16) as u8,
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 0x7) as u8,
            (a & 0xfc) as u16,
        ))
    }
}

fn valid(offset: u64, len: usize) -> bool {
    matches!(len, 1 | 2 | 4) && offset.is_multiple_of(len as u64)
}

impl BusDevice for PciCam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if !valid(offset, data.len()) {
            data.fill(0xff);
            return;
        }
        match offset {
            0..4 => {
                le_write(data, u64::from(self.address >> (8 * offset)));
            }
            4..8 => match self.selected() {
                Some((bus, dev, func, reg)) => {
                    self.root
                        .lock()
                        .config_read(bus, dev, func, reg + (offset as u16 - 4), data)
                }
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if !valid(offset, data.len()) {
            tracing::debug!(offset, len = data.len(), "ignoring unaligned PCI CAM write");
            return;
        }
        match offset {
            0 if data.len() == 4 => self.address = le_read(data) as u32,
            0..4 => {
                // Byte and word writes to the address port are mechanism #2
                // probes: not ours.
                tracing::debug!(offset, "ignoring partial write to 0xcf8");
            }
            4..8 => {
                if let Some((bus, dev, func, reg)) = self.selected() {
                    self.root
                        .lock()
                        .config_write(bus, dev, func, reg + (offset as u16 - 4), data);
                }
            }
            _ => tracing::debug!(offset, "PCI CAM write out of range"),
        }
    }
}
