use async_trait::async_trait;

use crate::error::Result;

/// Host CPU group membership (resource [`crate::Resource::CpuGroup`]).
#[async_trait]
pub trait CpuGroupManager: Send + Sync {
    /// Moves the VM into the host CPU group `group_id`.
    async fn set_cpu_group(&self, group_id: &str) -> Result<()>;
}
