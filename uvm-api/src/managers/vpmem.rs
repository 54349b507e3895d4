use async_trait::async_trait;

use crate::error::Result;
use crate::removal::Removal;
use crate::vpmem::{VpmemController, VpmemDevice};

/// Virtual persistent memory (resource [`crate::Resource::VPMem`]).
#[async_trait]
pub trait VpmemManager: Send + Sync {
    /// Sets the controller's limits, once (`AlreadySet` the second time).
    async fn add_controller(&self, controller: VpmemController) -> Result<()>;

    /// Maps an image at slot `device.id`. `NotFound` without a controller,
    /// `InvalidArgument` for a slot beyond `max_devices` or an image larger
    /// than `max_size_bytes`, `AlreadyExists` for a slot in use.
    async fn add_device(&self, device: VpmemDevice) -> Result<()>;

    /// Unmaps the device at slot `id`. `NotFound` if there is none.
    async fn remove_device(&self, id: u32) -> Result<Removal>;
}
