//! SCSI controllers and disks.

use std::path::Path;

use async_trait::async_trait;
use tracing::debug;
use uvm_api::config::{MAX_LUNS_PER_CONTROLLER, MAX_SCSI_CONTROLLERS};
use uvm_api::{
    Action, DiskFormat, Error, Operation, Removal, Resource, Result, ScsiDisk, ScsiManager,
};

use super::core::Core;
use super::faults::FaultPoint;
use super::machine::DeviceKey;
use super::table::Table;
use super::view::{disk_index, disk_name, lowest_free};

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

#[derive(Debug, Default)]
pub(crate) struct ScsiState {
    pub controllers: Table<u8, ()>,
    pub disks: Table<(u8, u8), Disk>,
}

fn controller_id(index: u8) -> String {
    format!("controller {index}")
}

/// The size of a disk's host file, refusing a directory.
pub(crate) fn image_size(argument: &str, path: &Path) -> Result<u64> {
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
        m.state.check(Action::ChangeDevices)?;
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
        m.scsi.controllers.insert(index, ());
        m.count("devices_added");
        debug!(index, state = %m.state, "SCSI controller added");
        Ok(())
    }

    pub(crate) fn scsi_remove_controller(&self, index: u8) -> Result<Removal> {
        self.require(Resource::Scsi, Operation::Remove)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        if m.scsi.controllers.attached(&index).is_none() {
            return Err(Error::not_found(Resource::Scsi, controller_id(index)));
        }
        let disks = m
            .scsi
            .disks
            .visible()
            .filter(|((c, _), _)| *c == index)
            .count();
        if disks > 0 {
            return Err(Error::invalid_argument(
                "index",
                format!("controller {index} still holds {disks} disk(s); remove them first"),
            ));
        }
        self.faults.take(FaultPoint::RemoveScsiController)?;
        self.begin_removal(
            &mut m,
            DeviceKey::ScsiController(index),
            Resource::Scsi,
            controller_id(index),
        )
    }

    /// Attaches `disk`, under the guest name `name` if given and free.
    pub(crate) fn scsi_add_disk(&self, disk: ScsiDisk, name: Option<&str>) -> Result<()> {
        self.require(Resource::Scsi, Operation::Add)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
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
        let used: Vec<usize> = m.scsi.disks.visible().map(|(_, d)| d.index).collect();
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
            state = %m.state, "SCSI disk attached");
        m.scsi.disks.insert((disk.controller, disk.lun), entry);
        m.count("devices_added");
        Ok(())
    }

    pub(crate) fn scsi_remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        self.require(Resource::Scsi, Operation::Remove)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        let id = format!("{controller}:{lun}");
        if m.scsi.disks.attached(&(controller, lun)).is_none() {
            return Err(Error::not_found(Resource::Scsi, id));
        }
        self.faults.take(FaultPoint::RemoveDisk)?;
        self.begin_removal(
            &mut m,
            DeviceKey::ScsiDisk(controller, lun),
            Resource::Scsi,
            id,
        )
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
