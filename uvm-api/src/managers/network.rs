use async_trait::async_trait;

use crate::devices::Nic;
use crate::error::Result;
use crate::removal::Removal;

/// Network adapters (resource [`crate::Resource::Network`]).
#[async_trait]
pub trait NetworkManager: Send + Sync {
    /// Adds a NIC. `AlreadyExists` if its id or MAC is in use on this VM.
    async fn add_nic(&self, nic: Nic) -> Result<()>;

    /// Removes the NIC `id`. `NotFound` if there is none.
    async fn remove_nic(&self, id: &str) -> Result<Removal>;
}
