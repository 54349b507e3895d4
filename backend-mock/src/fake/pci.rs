//! Host PCI device assignment.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{Action, Error, Operation, PciDevice, PciManager, Removal, Resource, Result};

use super::core::Core;
use super::faults::FaultPoint;
use super::machine::DeviceKey;
use super::table::Table;

#[derive(Debug, Default)]
pub(crate) struct PciState {
    pub devices: Table<String, PciDevice>,
}

impl Core {
    pub(crate) fn pci_add(&self, device: PciDevice) -> Result<()> {
        self.require(Resource::Pci, Operation::Add)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        device.validate()?;
        if m.pci.devices.contains(&device.id) {
            return Err(Error::already_exists(Resource::Pci, device.id));
        }
        self.faults.take(FaultPoint::AddPci)?;
        debug!(id = %device.id, host_path = %device.host_path.display(),
            virtual_function = ?device.virtual_function, state = %m.state, "PCI device assigned");
        m.pci.devices.insert(device.id.clone(), device);
        m.count("devices_added");
        Ok(())
    }

    pub(crate) fn pci_remove(&self, id: &str) -> Result<Removal> {
        self.require(Resource::Pci, Operation::Remove)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        let key = id.to_owned();
        if m.pci.devices.attached(&key).is_none() {
            return Err(Error::not_found(Resource::Pci, id));
        }
        self.faults.take(FaultPoint::RemovePci)?;
        self.begin_removal(&mut m, DeviceKey::Pci(key), Resource::Pci, id.to_owned())
    }
}

#[async_trait]
impl PciManager for Core {
    async fn add_device(&self, device: PciDevice) -> Result<()> {
        self.traced("pci add_device", async { self.pci_add(device) })
            .await
    }

    async fn remove_device(&self, id: &str) -> Result<Removal> {
        self.traced("pci remove_device", async { self.pci_remove(id) })
            .await
    }
}
