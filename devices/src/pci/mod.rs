//! The PCI root bus of the x86 VMM.
//!
//! One [`PciRoot`] holds up to 32 single-function slots on bus 0 (slot 0 is a
//! host bridge). The guest reaches configuration space through the legacy
//! port mechanism #1 ([`PciCam`], ports `0xcf8..=0xcff`) or through ECAM
//! ([`PciEcam`], MMIO, announced by an MCFG table). Memory BARs are assigned
//! from one MMIO window by a [`BarAllocator`], and guest accesses to that
//! window reach the owning function through [`PciBarWindow`].
//!
//! Wiring in the VMM: share the root as `Arc<Mutex<PciRoot>>`, put a
//! [`PciCam`] on the port bus at `0xcf8` (length 8), a [`PciEcam`] on the MMIO
//! bus at the MCFG base (length [`ECAM_SIZE`]), and a [`PciBarWindow`] on the
//! MMIO bus over the BAR window. Hotplug calls [`PciRoot::add_function`] and
//! [`PciRoot::remove_function`] while the guest runs.

mod bar;
mod bar_alloc;
mod cam;
mod config;
mod ecam;
mod function;
mod host_bridge;
mod root;
mod window;

pub use bar::{BarInfo, BarKind, BarRegion};
pub use bar_alloc::{BarAllocError, BarAllocator};
pub use cam::PciCam;
pub use config::{
    COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY, CONFIG_SPACE_SIZE, ConfigSpace,
    ConfigSpaceError, PciHeader,
};
pub use ecam::{ECAM_SIZE, PciEcam};
pub use function::{PciFunction, SharedFunction};
pub use host_bridge::HostBridge;
pub use root::{PciError, PciRoot, SLOT_COUNT};
pub use window::PciBarWindow;

/// Reads a little-endian value of up to 8 bytes.
pub(crate) fn le_read(data: &[u8]) -> u64 {
    data.iter()
        .take(8)
        .enumerate()
        .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

/// Writes the low `data.len()` bytes (up to 8) of `value`, little-endian.
pub(crate) fn le_write(data: &mut [u8], value: u64) {
    for (i, b) in data.iter_mut().take(8).enumerate() {
        *b = (value >> (8 * i)) as u8;
    }
}
