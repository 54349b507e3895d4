//! What the root bus needs from a PCI function.

use std::sync::Arc;

use parking_lot::Mutex;

use super::bar::{BarInfo, BarRegion};
use crate::quiesce::Pausable;
use crate::snapshot::Snapshottable;

/// One PCI function (the root bus models single-function devices). It can
/// be quiesced ([`Pausable`]) and has a state hook ([`Snapshottable`]).
pub trait PciFunction: Send + Pausable + Snapshottable {
    /// Reads configuration space at `offset` (0..4096); undefined bytes read as zero.
    fn config_read(&mut self, offset: u16, data: &mut [u8]);
    /// Writes configuration space at `offset` (0..4096).
    fn config_write(&mut self, offset: u16, data: &[u8]);
    /// The BARs the function declares (their sizes drive allocation).
    fn bars(&self) -> Vec<BarInfo>;
    /// Programs BAR `index` at `address` (done by the root when it assigns
    /// BARs, like firmware would).
    fn set_bar_address(&mut self, index: u8, address: u64);
    /// The BARs the function decodes now: those with a non-zero address while
    /// memory decoding is enabled in the command register.
    fn mapped_bars(&self) -> Vec<BarRegion>;
    /// A guest read at `offset` inside BAR `index`.
    fn bar_read(&mut self, index: u8, offset: u64, data: &mut [u8]);
    /// A guest write at `offset` inside BAR `index`.
    fn bar_write(&mut self, index: u8, offset: u64, data: &[u8]);
}

/// A function shared between the root bus and whoever else drives it (for
/// example the VMM's ioeventfd handler of a virtio device).
pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;
