//! Virtual persistent memory: one controller with limits, devices in slots.

use uvm_api::{DeviceTable, VpmemController, VpmemDevice};

/// A mapped image.
#[derive(Debug, Clone)]
pub(crate) struct Pmem {
    pub spec: VpmemDevice,
    pub size: u64,
}

/// The controller, once set, and the devices by slot.
#[derive(Debug, Default)]
pub(crate) struct VpmemState {
    pub controller: Option<VpmemController>,
    pub devices: DeviceTable<u32, Pmem>,
}
