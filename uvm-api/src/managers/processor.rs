use async_trait::async_trait;

use crate::devices::ProcessorLimits;
use crate::error::Result;

/// Processor limit updates (resource [`crate::Resource::Processor`]).
#[async_trait]
pub trait ProcessorManager: Send + Sync {
    /// Applies the limits that are set in `limits`.
    async fn update_limits(&self, limits: ProcessorLimits) -> Result<()>;
}
