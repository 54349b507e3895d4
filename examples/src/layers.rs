//! Attaching container image layers: SCSI where the backend has it, VPMem otherwise.

use std::path::Path;
use std::time::Duration;

use tracing::info;
use uvm_api::{
    DiskFormat, Error, ImageFormat, Operation, Resource, Result, ScsiDisk, Uvm, VpmemDevice,
};

/// Where a layer ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerAttachment {
    /// On a SCSI controller at a LUN.
    Scsi {
        /// Controller index.
        controller: u8,
        /// LUN.
        lun: u8,
    },
    /// In a VPMem slot.
    Vpmem {
        /// Slot number.
        slot: u32,
    },
}

/// Attaches a read-only raw layer image, preferring SCSI (`controller`, `slot`
/// as LUN) and falling back to VPMem (`slot`) when the VM cannot add SCSI disks.
///
/// # Errors
/// `NotSupported` for SCSI add when the VM can do neither; any error of the add itself.
pub async fn attach_layer(
    vm: &dyn Uvm,
    controller: u8,
    slot: u8,
    image: &Path,
) -> Result<LayerAttachment> {
    if vm.supported(Resource::Scsi, Operation::Add) {
        let scsi = vm
            .scsi()
            .ok_or(Error::not_supported(Resource::Scsi, Operation::Add))?;
        scsi.add_disk(ScsiDisk {
            controller,
            lun: slot,
            path: image.to_owned(),
            format: DiskFormat::Raw,
            read_only: true,
        })
        .await?;
        info!(
            vm = vm.id(),
            controller,
            lun = slot,
            "layer attached over SCSI"
        );
        return Ok(LayerAttachment::Scsi {
            controller,
            lun: slot,
        });
    }
    if vm.supported(Resource::VPMem, Operation::Add) {
        let vpmem = vm
            .vpmem()
            .ok_or(Error::not_supported(Resource::VPMem, Operation::Add))?;
        vpmem
            .add_device(VpmemDevice {
                id: u32::from(slot),
                path: image.to_owned(),
                read_only: true,
                format: ImageFormat::Raw,
            })
            .await?;
        info!(vm = vm.id(), slot, "layer attached over VPMem");
        return Ok(LayerAttachment::Vpmem {
            slot: u32::from(slot),
        });
    }
    Err(Error::not_supported(Resource::Scsi, Operation::Add))
}

/// Detaches a layer and waits, up to `timeout`, for the guest to release it.
///
/// # Errors
/// `NotSupported` if the VM cannot remove that kind of device, `Timeout` if
/// the guest does not release it in time, any error of the remove itself.
pub async fn detach_layer(
    vm: &dyn Uvm,
    attachment: LayerAttachment,
    timeout: Duration,
) -> Result<()> {
    let removal = match attachment {
        LayerAttachment::Scsi { controller, lun } => {
            vm.scsi()
                .ok_or(Error::not_supported(Resource::Scsi, Operation::Remove))?
                .remove_disk(controller, lun)
                .await?
        }
        LayerAttachment::Vpmem { slot } => {
            vm.vpmem()
                .ok_or(Error::not_supported(Resource::VPMem, Operation::Remove))?
                .remove_device(slot)
                .await?
        }
    };
    removal.wait(timeout).await
}
