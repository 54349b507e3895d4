//! The MMIO window BARs live in, routed to the function that maps each address.

use std::sync::Arc;

use parking_lot::Mutex;

use super::root::PciRoot;
use crate::bus::BusDevice;

/// A [`BusDevice`] covering the BAR window: insert it on the MMIO bus at the
/// window base with the window size (see [`PciRoot::bar_window`]). Accesses
/// no mapped BAR covers read as all ones and are otherwise ignored.
pub struct PciBarWindow {
    root: Arc<Mutex<PciRoot>>,
    base: u64,
}

impl PciBarWindow {
    /// A window device over `root` (its base is the root's window base).
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        let (base, _) = root.lock().bar_window();
        PciBarWindow { root, base }
    }
}

impl BusDevice for PciBarWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(addr) = self.base.checked_add(offset) else {
            data.fill(0xff);
            return;
        };
        if !self.root.lock().mmio_read(addr, data) {
            tracing::debug!(addr, "read of an unmapped address in the BAR window");
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(addr) = self.base.checked_add(offset) else {
            return;
        };
        if !self.root.lock().mmio_write(addr, data) {
            tracing::debug!(addr, "write to an unmapped address in the BAR window");
        }
    }
}
