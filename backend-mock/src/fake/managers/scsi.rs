//! SCSI controllers and disks.

use std::path::Path;

use async_trait::async_trait;
use tracing::debug;
use uvm_api::config::{MAX_LUNS_PER_CONTROLLER, MAX_SCSI_CONTROLLERS};
use uvm_api::{
    Action, DiskFormat, Error, Operation, Removal, Resource, Result, ScsiDisk, ScsiManager,
    validate,
};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;
use crate::fake::guest::naming::{disk_index, disk_name, lowest_free};
use crate::fake::removal::Unplug;
use crate::fake::state::scsi::Disk;

fn controller_id(index: u8) -> String {
    format!("controller {index}")
}

/// The size of a disk's host file, refusing a directory.
fn image_size(argument: &str, path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
    if meta.is_dir() {
        return Err(Error::invalid_argument(
            argument,
            format!("{} is a directory, not an image", path.display()),
        ));
    }
    Ok(meta.len())
}

impl Core {
    pub(crate) fn scsi_add_controller(&self, index: u8) -> Result<()> {
        self.require(Resource::Scsi, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        if index >= MAX_SCSI_CONTROLLERS {
            return Err(Error::LimitReached {
                resource: Resource::Scsi,
                limit: format!(
                    "{MAX_SCSI_CONTROLLERS} controllers (indices 0..{MAX_SCSI_CONTROLLERS})"
                ),
            });
        }
        if m.scsi.controllers.contains(&index) {
            return Err(Error::already_exists(Resource::Scsi, controller_id(index)));
        }
        self.faults.take(FaultPoint::AddScsiController)?;
        let id = controller_id(index);
        m.attach(|m| &mut m.scsi.controllers, index, (), Resource::Scsi, id)?;
        debug!(index, state = %self.state(), "SCSI controller added");
        Ok(())
    }

    pub(crate) fn scsi_remove_controller(&self, index: u8) -> Result<Removal> {
        let unplug = Unplug {
            resource: Resource::Scsi,
            id: controller_id(index),
            table: |m| &mut m.scsi.controllers,
            key: index,
            fault: FaultPoint::RemoveScsiController,
        };
        self.unplug(unplug, |m| {
            let disks = m
                .scsi
                .disks
                .iter_visible()
                .filter(|((c, _), _)| *c == index)
                .count();
            validate::scsi_controller_empty(index, disks)
        })
    }

    /// Attaches `disk`, under the guest name `name` if given and free.
    pub(crate) fn scsi_add_disk(&self, disk: ScsiDisk, name: Option<&str>) -> Result<()> {
        self.require(Resource::Scsi, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        disk.validate()?;
        if disk.lun >= MAX_LUNS_PER_CONTROLLER {
            return Err(Error::invalid_argument(
                "lun",
                format!("{} is not below {MAX_LUNS_PER_CONTROLLER}", disk.lun),
            ));
        }
        if !matches!(disk.format, DiskFormat::Raw | DiskFormat::BlockDevice) {
            return Err(Error::invalid_argument(
                "format",
                format!(
                    "{:?} disks are not supported by the mock backend (raw and block_device are)",
                    disk.format
                ),
            ));
        }
        if m.scsi.controllers.attached(&disk.controller).is_none() {
            return Err(Error::not_found(
                Resource::Scsi,
                controller_id(disk.controller),
            ));
        }
        if m.scsi.disks.contains(&(disk.controller, disk.lun)) {
            return Err(Error::already_exists(Resource::Scsi, disk.address()));
        }
        let size = image_size("path", &disk.path)?;
        self.faults.take(FaultPoint::AddDisk)?;
        let used: Vec<usize> = m.scsi.disks.iter_visible().map(|(_, d)| d.index).collect();
        let index = name
            .and_then(disk_index)
            .filter(|i| !used.contains(i))
            .unwrap_or_else(|| lowest_free(used.iter().copied()));
        let entry = Disk {
            name: disk_name(index),
            index,
            size,
            spec: disk.clone(),
            read_bytes: 0,
            write_bytes: 0,
            requests: 0,
        };
        debug!(address = %disk.address(), name = %entry.name, size, read_only = disk.read_only,
            state = %self.state(), "SCSI disk attached");
        let key = (disk.controller, disk.lun);
        m.attach(
            |m| &mut m.scsi.disks,
            key,
            entry,
            Resource::Scsi,
            disk.address(),
        )
    }

    pub(crate) fn scsi_remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        let unplug = Unplug {
            resource: Resource::Scsi,
            id: format!("{controller}:{lun}"),
            table: |m| &mut m.scsi.disks,
            key: (controller, lun),
            fault: FaultPoint::RemoveDisk,
        };
        self.unplug(unplug, |_| Ok(()))
    }
}

#[async_trait]
impl ScsiManager for Core {
    async fn add_controller(&self, index: u8) -> Result<()> {
        self.traced("scsi add_controller", async {
            self.scsi_add_controller(index)
        })
        .await
    }

    async fn remove_controller(&self, index: u8) -> Result<Removal> {
        self.traced("scsi remove_controller", async {
            self.scsi_remove_controller(index)
        })
        .await
    }

    async fn add_disk(&self, disk: ScsiDisk) -> Result<()> {
        self.traced("scsi add_disk", async { self.scsi_add_disk(disk, None) })
            .await
    }

    async fn remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        self.traced("scsi remove_disk", async {
            self.scsi_remove_disk(controller, lun)
        })
        .await
    }
}
