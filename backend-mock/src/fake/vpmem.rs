//! Virtual persistent memory: one controller with limits, devices in slots.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{
    Action, Error, Operation, Removal, Resource, Result, VpmemController, VpmemDevice, VpmemManager,
};

use super::core::Core;
use super::faults::FaultPoint;
use super::machine::DeviceKey;
use super::scsi::image_size;
use super::table::Table;

/// A mapped image.
#[derive(Debug, Clone)]
pub(crate) struct Pmem {
    pub spec: VpmemDevice,
    pub size: u64,
}

#[derive(Debug, Default)]
pub(crate) struct VpmemState {
    pub controller: Option<VpmemController>,
    pub devices: Table<u32, Pmem>,
}

impl Core {
    pub(crate) fn vpmem_add_controller(&self, controller: VpmemController) -> Result<()> {
        self.require(Resource::VPMem, Operation::Add)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
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
        m.state.check(Action::ChangeDevices)?;
        device.validate()?;
        let Some(controller) = m.vpmem.controller else {
            return Err(Error::not_found(Resource::VPMem, "controller"));
        };
        if device.id >= controller.max_devices {
            return Err(Error::invalid_argument(
                "id",
                format!(
                    "slot {} is not below the controller's max_devices {}",
                    device.id, controller.max_devices
                ),
            ));
        }
        let size = image_size("path", &device.path)?;
        if size > controller.max_size_bytes {
            return Err(Error::invalid_argument(
                "path",
                format!(
                    "{} is {size} bytes, more than the controller's max_size_bytes {}",
                    device.path.display(),
                    controller.max_size_bytes
                ),
            ));
        }
        if m.vpmem.devices.contains(&device.id) {
            return Err(Error::already_exists(
                Resource::VPMem,
                device.id.to_string(),
            ));
        }
        self.faults.take(FaultPoint::AddVpmem)?;
        debug!(slot = device.id, size, format = ?device.format, state = %m.state,
            "VPMem device mapped");
        m.vpmem
            .devices
            .insert(device.id, Pmem { spec: device, size });
        m.count("devices_added");
        Ok(())
    }

    pub(crate) fn vpmem_remove_device(&self, id: u32) -> Result<Removal> {
        self.require(Resource::VPMem, Operation::Remove)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        if m.vpmem.devices.attached(&id).is_none() {
            return Err(Error::not_found(Resource::VPMem, id.to_string()));
        }
        self.faults.take(FaultPoint::RemoveVpmem)?;
        self.begin_removal(
            &mut m,
            DeviceKey::Vpmem(id),
            Resource::VPMem,
            id.to_string(),
        )
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
