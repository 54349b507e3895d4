use async_trait::async_trait;

use crate::error::Result;

/// Guest memory size updates (resource [`crate::Resource::Memory`]).
#[async_trait]
pub trait MemoryManager: Send + Sync {
    /// Changes the guest's memory to `size_mib` MiB (balloon or hot-add,
    /// backend's choice). `InvalidArgument` outside the backend's range.
    async fn update_memory(&self, size_mib: u64) -> Result<()>;
}
