//! Network adapters.

use uvm_api::{DeviceTable, Nic};

/// An adapter as the VM holds it.
#[derive(Debug, Clone)]
pub(crate) struct NicEntry {
    pub spec: Nic,
    /// The guest calls it `eth<index>`.
    pub index: usize,
}

/// Adapters by id.
#[derive(Debug, Default)]
pub(crate) struct NicState {
    pub nics: DeviceTable<String, NicEntry>,
}
