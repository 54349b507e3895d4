use async_trait::async_trait;

use crate::devices::ScsiDisk;
use crate::error::Result;
use crate::removal::Removal;

/// SCSI controllers and the disks on them (resource [`crate::Resource::Scsi`]).
///
/// Controllers are numbered `0..MAX_SCSI_CONTROLLERS`; each holds LUNs
/// `0..MAX_LUNS_PER_CONTROLLER` (see [`crate::config`]), the hcsshim model.
#[async_trait]
pub trait ScsiManager: Send + Sync {
    /// Adds controller `index`. `AlreadyExists` if it is there, `LimitReached`
    /// if `index` is beyond what the backend supports.
    async fn add_controller(&self, index: u8) -> Result<()>;

    /// Removes controller `index`, which must hold no disks (`InvalidArgument` otherwise).
    async fn remove_controller(&self, index: u8) -> Result<Removal>;

    /// Attaches `disk` at its controller and LUN. `NotFound` for an unknown
    /// controller, `AlreadyExists` for a LUN in use (or still being released),
    /// `InvalidArgument` (argument `format`) for a format the backend cannot
    /// serve: `NotSupported` is kept for "this backend cannot add SCSI disks at
    /// all", so that it always agrees with `supported(Scsi, Add)`.
    async fn add_disk(&self, disk: ScsiDisk) -> Result<()>;

    /// Detaches the disk at `controller`:`lun`. `NotFound` if there is none.
    async fn remove_disk(&self, controller: u8, lun: u8) -> Result<Removal>;
}
