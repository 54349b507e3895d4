use async_trait::async_trait;

use crate::devices::{ShareKind, SharedFolder};
use crate::error::Result;
use crate::removal::Removal;

/// Shared folders: virtio-fs, 9p and VSMB (resources [`crate::Resource::VirtioFs`],
/// [`crate::Resource::Plan9`], [`crate::Resource::Vsmb`]); support is per kind.
#[async_trait]
pub trait SharedFolderManager: Send + Sync {
    /// Shares a host folder. `NotSupported` for a kind the backend lacks,
    /// `AlreadyExists` if a share of that kind has the name.
    async fn add_share(&self, share: SharedFolder) -> Result<()>;

    /// Stops sharing `name` of `kind`. `NotFound` if there is none.
    async fn remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal>;
}
