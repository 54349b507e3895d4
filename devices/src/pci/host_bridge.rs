//! The host bridge at device 0 of bus 0.

use super::bar::{BarInfo, BarRegion};
use super::config::{ConfigSpace, PciHeader};
use super::function::PciFunction;
use crate::quiesce::{Pausable, PauseError};
use crate::snapshot::{DeviceState, Snapshottable, StateError};

/// A host bridge function: identity only, no BARs.
#[derive(Debug, Clone)]
pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    /// A host bridge (class 06/00) with these vendor and device ids.
    pub fn new(vendor_id: u16, device_id: u16) -> Self {
        HostBridge {
            config: ConfigSpace::new(&PciHeader {
                vendor_id,
                device_id,
                class: 0x06,
                subclass: 0x00,
                subsystem_vendor_id: vendor_id,
                subsystem_id: device_id,
                ..Default::default()
            }),
        }
    }
}

impl PciFunction for HostBridge {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(usize::from(offset), data);
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(usize::from(offset), data);
    }

    fn bars(&self) -> Vec<BarInfo> {
        Vec::new()
    }

    fn set_bar_address(&mut self, index: u8, _address: u64) {
        tracing::warn!(index, "host bridge has no BARs");
    }

    fn mapped_bars(&self) -> Vec<BarRegion> {
        Vec::new()
    }

    fn bar_read(&mut self, index: u8, offset: u64, data: &mut [u8]) {
        tracing::warn!(
            index,
            offset,
            "read of a host bridge BAR that does not exist"
        );
        data.fill(0xff);
    }

    fn bar_write(&mut self, index: u8, offset: u64, _data: &[u8]) {
        tracing::warn!(
            index,
            offset,
            "write to a host bridge BAR that does not exist"
        );
    }
}

impl Pausable for HostBridge {
    /// A host bridge does nothing on its own: there is nothing to stop.
    fn pause(&mut self) -> Result<(), PauseError> {
        Ok(())
    }

    /// Nothing was stopped.
    fn resume(&mut self) -> Result<(), PauseError> {
        Ok(())
    }
}

/// The kind and version of the host bridge's state in a snapshot.
const STATE_KIND: &str = "pci-host-bridge";
const STATE_VERSION: u32 = 1;

/// A snapshot keeps the bridge's configuration registers.
impl Snapshottable for HostBridge {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        DeviceState::new(STATE_KIND, STATE_VERSION, &self.config.registers())
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let registers: Vec<u8> = state.decode(STATE_KIND, STATE_VERSION)?;
        self.config
            .restore_registers(&registers)
            .map_err(|e| StateError::Invalid(e.to_string()))
    }
}
