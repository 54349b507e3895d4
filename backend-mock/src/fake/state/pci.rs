//! Host PCI devices assigned to the guest.

use uvm_api::{DeviceTable, PciDevice};

/// Assigned devices by id.
#[derive(Debug, Default)]
pub(crate) struct PciState {
    pub devices: DeviceTable<String, PciDevice>,
}
