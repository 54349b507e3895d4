//! The virtio vendor capabilities and the BAR layout they describe.

use crate::pci::{ConfigSpace, ConfigSpaceError};

/// PCI capability id of vendor-specific capabilities.
pub const CAP_ID_VENDOR: u8 = 0x09;
/// PCI capability id of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;

/// `cfg_type` of the common configuration structure.
pub const CFG_COMMON: u8 = 1;
/// `cfg_type` of the notification structure.
pub const CFG_NOTIFY: u8 = 2;
/// `cfg_type` of the ISR status byte.
pub const CFG_ISR: u8 = 3;
/// `cfg_type` of the device-specific configuration.
pub const CFG_DEVICE: u8 = 4;

/// Offset of the common configuration in BAR 0.
pub const COMMON_OFFSET: u64 = 0x0000;
/// Length of the common configuration (`struct virtio_pci_common_cfg`).
pub const COMMON_LEN: u64 = 0x38;
/// Offset of the ISR byte in BAR 0.
pub const ISR_OFFSET: u64 = 0x1000;
/// Length of the ISR region.
pub const ISR_LEN: u64 = 1;
/// Offset of the device configuration in BAR 0.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Length of the device configuration region.
pub const DEVICE_LEN: u64 = 0x1000;
/// Offset of the notification region in BAR 0.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Length of the notification region.
pub const NOTIFY_LEN: u64 = 0x1000;
/// Queue `n` is notified at `NOTIFY_OFFSET + n * NOTIFY_OFF_MULTIPLIER`.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Offset of the MSI-X table in BAR 0.
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
/// Offset of the MSI-X pending-bit array in BAR 0.
pub const MSIX_PBA_OFFSET: u64 = 0x6000;
/// Size of BAR 0.
pub const BAR0_SIZE: u64 = 0x8000;
/// Most MSI-X vectors the layout holds.
pub const MAX_VECTORS: u16 = ((MSIX_PBA_OFFSET - MSIX_TABLE_OFFSET) / 16) as u16;

/// Adds one `virtio_pci_cap` (plus the multiplier for the notify cap).
fn add_virtio_cap(
    config: &mut ConfigSpace,
    cfg_type: u8,
    offset: u64,
    len: u64,
    multiplier: Option<u32>,
) -> Result<usize, ConfigSpaceError> {
    let cap_len: u8 = if multiplier.is_some() { 20 } else { 16 };
    let mut body = vec![cap_len, cfg_type, 0 /* bar */, 0 /* id */, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(len as u32).to_le_bytes());
    if let Some(m) = multiplier {
        body.extend_from_slice(&m.to_le_bytes());
    }
    config.add_capability(CAP_ID_VENDOR, &body, &[])
}

/// Adds the four virtio capabilities and the MSI-X capability for a table
/// of `vectors` entries; returns the MSI-X capability offset.
pub fn add_capabilities(config: &mut ConfigSpace, vectors: u16) -> Result<usize, ConfigSpaceError> {
    add_virtio_cap(config, CFG_COMMON, COMMON_OFFSET, COMMON_LEN, None)?;
    add_virtio_cap(
        config,
        CFG_NOTIFY,
        NOTIFY_OFFSET,
        NOTIFY_LEN,
        Some(NOTIFY_OFF_MULTIPLIER),
    )?;
    add_virtio_cap(config, CFG_ISR, ISR_OFFSET, ISR_LEN, None)?;
    add_virtio_cap(config, CFG_DEVICE, DEVICE_OFFSET, DEVICE_LEN, None)?;
    let control = vectors.saturating_sub(1) & 0x7ff;
    let mut body = control.to_le_bytes().to_vec();
    body.extend_from_slice(&(MSIX_TABLE_OFFSET as u32).to_le_bytes()); // BIR 0
    body.extend_from_slice(&(MSIX_PBA_OFFSET as u32).to_le_bytes()); // BIR 0
    config.add_capability(CAP_ID_MSIX, &body, &[0x00, 0xc0])
}
