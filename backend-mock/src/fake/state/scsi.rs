//! SCSI controllers and the disks on them.

use uvm_api::{DeviceTable, ScsiDisk};

/// A disk as the VM holds it.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    pub spec: ScsiDisk,
    /// Index of its Linux name (0 = sda).
    pub index: usize,
    pub name: String,
    /// Size of the host file when attached; the guest sees this many bytes.
    pub size: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub requests: u64,
}

/// Controllers by index, disks by (controller, LUN).
#[derive(Debug, Default)]
pub(crate) struct ScsiState {
    pub controllers: DeviceTable<u8, ()>,
    pub disks: DeviceTable<(u8, u8), Disk>,
}
