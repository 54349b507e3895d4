//! Virtual persistent memory: one controller with limits, devices in slots.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{
    Action, Error, Operation, Removal, Resource, Result, VpmemController, VpmemDevice, VpmemManager,
};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;
use crate::fake::removal::Unplug;
use crate::fake::state::vpmem::Pmem;

impl Core {
    pub(crate) fn vpmem_add_controller(&self, controller: VpmemController) -> Result<()> {
        self.require(Resource::VPMem, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        if m.vpmem.controller.is_some() {
            return Err(Error::AlreadySet {
                what: "the VPMem controller".to_owned(),
            });
        }
        controller.validate()?;
        self.faults.take(FaultPoint::AddVpmemController)?;
        m.vpmem.controller = Some(controller);
        debug!(
            max_devices = controller.max_devices,
            max_size_bytes = controller.max_size_bytes,
            "VPMem controller set"
        );
        Ok(())
    }

    pub(crate) fn vpmem_add_device(&self, device: VpmemDevice) -> Result<()> {
        self.require(Resource::VPMem, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        device.validate()?;
        let Some(controller) = m.vpmem.controller else {
            return Err(Error::not_found(Resource::VPMem, "controller"));
        };
        let size = device.check_against(&controller)?;
        if m.vpmem.devices.contains(&device.id) {
            return Err(Error::already_exists(
                Resource::VPMem,
                device.id.to_string(),
            ));
        }
        self.faults.take(FaultPoint::AddVpmem)?;
        debug!(slot = device.id, size, format = ?device.format, state = %self.state(),
            "VPMem device mapped");
        let (id, entry) = (device.id, Pmem { spec: device, size });
        m.attach(
            |m| &mut m.vpmem.devices,
            id,
            entry,
            Resource::VPMem,
            id.to_string(),
        )
    }

    pub(crate) fn vpmem_remove_device(&self, id: u32) -> Result<Removal> {
        let unplug = Unplug {
            resource: Resource::VPMem,
            id: id.to_string(),
            table: |m| &mut m.vpmem.devices,
            key: id,
            fault: FaultPoint::RemoveVpmem,
        };
        self.unplug(unplug, |_| Ok(()))
    }
}

#[async_trait]
impl VpmemManager for Core {
    async fn add_controller(&self, controller: VpmemController) -> Result<()> {
        self.traced("vpmem add_controller", async {
            self.vpmem_add_controller(controller)
        })
        .await
    }

    async fn add_device(&self, device: VpmemDevice) -> Result<()> {
        self.traced("vpmem add_device", async { self.vpmem_add_device(device) })
            .await
    }

    async fn remove_device(&self, id: u32) -> Result<Removal> {
        self.traced("vpmem remove_device", async {
            self.vpmem_remove_device(id)
        })
        .await
    }
}
