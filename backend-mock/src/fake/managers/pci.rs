//! Host PCI device assignment.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{Action, Error, Operation, PciDevice, PciManager, Removal, Resource, Result};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;
use crate::fake::removal::Unplug;

impl Core {
    pub(crate) fn pci_add(&self, device: PciDevice) -> Result<()> {
        self.require(Resource::Pci, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        device.validate()?;
        if m.pci.devices.contains(&device.id) {
            return Err(Error::already_exists(Resource::Pci, device.id));
        }
        self.faults.take(FaultPoint::AddPci)?;
        debug!(id = %device.id, host_path = %device.host_path.display(),
            virtual_function = ?device.virtual_function, state = %self.state(), "PCI device assigned");
        let id = device.id.clone();
        m.attach(
            |m| &mut m.pci.devices,
            id.clone(),
            device,
            Resource::Pci,
            id,
        )
    }

    pub(crate) fn pci_remove(&self, id: &str) -> Result<Removal> {
        let unplug = Unplug {
            resource: Resource::Pci,
            id: id.to_owned(),
            table: |m| &mut m.pci.devices,
            key: id.to_owned(),
            fault: FaultPoint::RemovePci,
        };
        self.unplug(unplug, |_| Ok(()))
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
