//! [`KvmScsi`]: SCSI controllers as virtio-scsi functions, disks as LUNs.
//!
//! Controller `i` is a virtio-scsi function in PCI slot
//! [`slots::scsi`]`(i)`, so controllers sit in slot order (the guest agent
//! numbers virtio-scsi hosts by PCI address). Every disk is LUN `lun` of
//! target 0; a LUN added to a running controller is announced through the
//! virtio-scsi event queue (transport reset, rescan) and a removed one
//! likewise (transport reset, removed); its id is free again once the guest
//! has released it. Formats: raw image files and whole block devices;
//! anything else is refused (`InvalidArgument`, argument `format`). Images
//! are never probed.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::Instrument;
use uvm_api::config::{MAX_LUNS_PER_CONTROLLER, MAX_SCSI_CONTROLLERS};
use uvm_api::{
    DeviceTable, DiskFormat, Error, Removal, Resource, Result, ScsiDisk, ScsiManager, op_span,
    validate,
};
use uvm_devices::scsi::{DiskImage, ImageKind, ScsiError, ScsiLun};
use uvm_devices::virtio::scsi::{ScsiHost, VirtioScsiDevice};

use super::context::ManagerContext;
use super::removal::Unplug;
use crate::pci::slots;

struct Controller {
    host: ScsiHost,
    slot: u8,
}

#[derive(Default)]
struct ScsiState {
    controllers: DeviceTable<u8, Controller>,
    disks: DeviceTable<(u8, u8), ()>,
}

/// The SCSI manager of one VM.
pub struct KvmScsi {
    ctx: ManagerContext,
    state: Arc<Mutex<ScsiState>>,
}

fn controller_id(index: u8) -> String {
    format!("controller {index}")
}

fn disk_error(disk: &ScsiDisk, e: ScsiError) -> Error {
    match e {
        ScsiError::Open { path, source } => {
            Error::io(format!("opening disk image {}", path.display()), source)
        }
        ScsiError::NotRegularFile(p) => Error::invalid_argument(
            "path",
            format!("{} is not a regular file (format raw)", p.display()),
        ),
        ScsiError::NotBlockDevice(p) => Error::invalid_argument(
            "path",
            format!(
                "{} is not a block device (format block_device)",
                p.display()
            ),
        ),
        ScsiError::TooSmall(p) => Error::invalid_argument(
            "path",
            format!("{} is smaller than one 512-byte block", p.display()),
        ),
        ScsiError::LunInUse(_) => Error::already_exists(Resource::Scsi, disk.address()),
        other => Error::backend(other),
    }
}

impl KvmScsi {
    /// The manager for the VM of `ctx`.
    pub fn new(ctx: ManagerContext) -> Self {
        KvmScsi {
            ctx,
            state: Arc::new(Mutex::new(ScsiState::default())),
        }
    }

    pub(crate) fn do_add_controller(&self, index: u8) -> Result<()> {
        self.ctx.check_state()?;
        let slot = slots::scsi(index).ok_or_else(|| Error::LimitReached {
            resource: Resource::Scsi,
            limit: format!(
                "{MAX_SCSI_CONTROLLERS} controllers (indices 0..{MAX_SCSI_CONTROLLERS})"
            ),
        })?;
        let device = VirtioScsiDevice::new(1);
        let controller = Controller {
            host: device.host(),
            slot,
        };
        if self
            .state
            .lock()
            .controllers
            .insert(index, controller)
            .is_err()
        {
            return Err(Error::already_exists(Resource::Scsi, controller_id(index)));
        }
        let plugged = self.ctx.hub.plug(
            slot,
            &format!("virtio-scsi controller {index}"),
            Box::new(device),
            None,
        );
        if let Err(e) = plugged {
            self.state.lock().controllers.take_attached(&index);
            return Err(self.ctx.hub_error(Resource::Scsi, e));
        }
        Ok(())
    }

    fn do_remove_controller(&self, index: u8) -> Result<Removal> {
        self.ctx.check_state()?;
        let slot = {
            let state = self.state.lock();
            let Some(slot) = state.controllers.attached(&index).map(|c| c.slot) else {
                return Err(Error::not_found(Resource::Scsi, controller_id(index)));
            };
            let disks = state
                .disks
                .iter_visible()
                .filter(|((c, _), _)| *c == index)
                .count();
            validate::scsi_controller_empty(index, disks)?;
            slot
        };
        Unplug {
            resource: Resource::Scsi,
            table: |s: &mut ScsiState| &mut s.controllers,
            released: |_: &mut ScsiState, _: &Controller| {},
        }
        .start(&self.state, index, &controller_id(index), || {
            self.ctx
                .hub
                .unplug(slot)
                .map_err(|e| self.ctx.hub_error(Resource::Scsi, e))
        })
    }

    pub(crate) fn do_add_disk(&self, disk: ScsiDisk) -> Result<()> {
        self.ctx.check_state()?;
        disk.validate()?;
        if disk.lun >= MAX_LUNS_PER_CONTROLLER {
            return Err(Error::invalid_argument(
                "lun",
                format!("{} is not below {MAX_LUNS_PER_CONTROLLER}", disk.lun),
            ));
        }
        let kind = match disk.format {
            DiskFormat::Raw => ImageKind::Raw,
            DiskFormat::BlockDevice => ImageKind::BlockDevice,
            other => {
                return Err(Error::invalid_argument(
                    "format",
                    format!(
                        "{other:?} disks are not supported by the kvm backend (raw and block_device are)"
                    ),
                ));
            }
        };
        let key = (disk.controller, disk.lun);
        let host = {
            let mut state = self.state.lock();
            let Some(host) = state
                .controllers
                .attached(&disk.controller)
                .map(|c| c.host.clone())
            else {
                return Err(Error::not_found(
                    Resource::Scsi,
                    controller_id(disk.controller),
                ));
            };
            // Reserved now; the device is called with the lock released.
            if state.disks.insert(key, ()).is_err() {
                return Err(Error::already_exists(Resource::Scsi, disk.address()));
            }
            host
        };
        let attached = self.attach_lun(&host, &disk, kind);
        if attached.is_err() {
            self.state.lock().disks.take_attached(&key);
        }
        attached
    }

    fn attach_lun(&self, host: &ScsiHost, disk: &ScsiDisk, kind: ImageKind) -> Result<()> {
        if disk.path.is_dir() {
            return Err(Error::invalid_argument(
                "path",
                format!("{} is a directory, not an image", disk.path.display()),
            ));
        }
        let image =
            DiskImage::open(&disk.path, kind, disk.read_only).map_err(|e| disk_error(disk, e))?;
        let serial = format!("uvm-{}-{}", disk.controller, disk.lun);
        host.add_lun(u16::from(disk.lun), ScsiLun::new(image, &serial))
            .map_err(|e| disk_error(disk, e))?;
        tracing::info!(vm = %self.ctx.vm_id, address = %disk.address(), read_only = disk.read_only, "SCSI disk attached");
        Ok(())
    }

    fn do_remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        self.ctx.check_state()?;
        let id = format!("{controller}:{lun}");
        let key = (controller, lun);
        let host = {
            let state = self.state.lock();
            state
                .disks
                .attached(&key)
                .and_then(|_| {
                    state
                        .controllers
                        .iter_visible()
                        .find(|(c, _)| **c == controller)
                        .map(|(_, c)| c.host.clone())
                })
                .ok_or_else(|| Error::not_found(Resource::Scsi, id.clone()))?
        };
        Unplug {
            resource: Resource::Scsi,
            table: |s: &mut ScsiState| &mut s.disks,
            released: |_: &mut ScsiState, _: &()| {},
        }
        .start(&self.state, key, &id, || {
            host.remove_lun(u16::from(lun)).map_err(Error::backend)
        })
    }

    /// The VM stopped: every pending removal completes, the tables empty.
    pub fn shut_down(&self) {
        let (disks, controllers) = {
            let mut state = self.state.lock();
            (state.disks.drain(), state.controllers.drain())
        };
        disks.complete();
        controllers.complete();
    }
}

#[async_trait]
impl ScsiManager for KvmScsi {
    async fn add_controller(&self, index: u8) -> Result<()> {
        let span = op_span(&self.ctx.vm_id, "scsi add_controller");
        async { self.do_add_controller(index) }
            .instrument(span)
            .await
    }

    async fn remove_controller(&self, index: u8) -> Result<Removal> {
        let span = op_span(&self.ctx.vm_id, "scsi remove_controller");
        async { self.do_remove_controller(index) }
            .instrument(span)
            .await
    }

    async fn add_disk(&self, disk: ScsiDisk) -> Result<()> {
        let span = op_span(&self.ctx.vm_id, "scsi add_disk");
        async { self.do_add_disk(disk) }.instrument(span).await
    }

    async fn remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        let span = op_span(&self.ctx.vm_id, "scsi remove_disk");
        async { self.do_remove_disk(controller, lun) }
            .instrument(span)
            .await
    }
}
