use async_trait::async_trait;

use crate::devices::PciDevice;
use crate::error::Result;
use crate::removal::Removal;

/// Host PCI device assignment (resource [`crate::Resource::Pci`]).
#[async_trait]
pub trait PciManager: Send + Sync {
    /// Assigns a host device. `AlreadyExists` if the id is in use.
    async fn add_device(&self, device: PciDevice) -> Result<()>;

    /// Removes the device `id`. `NotFound` if there is none.
    async fn remove_device(&self, id: &str) -> Result<Removal>;
}
