//! The BARs of a PCI function as the root bus and the configuration space
//! both see them: what a function declares and what the guest maps.

/// The kind of a memory BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// A 32-bit memory BAR (one register).
    Memory32,
    /// A 64-bit memory BAR (two registers, the second one holding the high half).
    Memory64,
}

/// A declared BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR register index (0..=5).
    pub index: u8,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// 32- or 64-bit memory BAR.
    pub kind: BarKind,
    /// Whether the BAR is marked prefetchable.
    pub prefetchable: bool,
}

/// A BAR as the guest currently maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRegion {
    /// BAR register index.
    pub index: u8,
    /// Guest physical address.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}
