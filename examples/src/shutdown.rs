//! Stopping a VM the way a shim should: politely first.

use std::time::Duration;

use tracing::warn;
use uvm_api::{ExitStatus, Result, StopMode, Uvm};

/// Asks the guest to power off, forcing it after `grace`, and returns why it stopped.
///
/// # Errors
/// Whatever `stop` returns; a VM that has already stopped is not an error.
pub async fn shutdown(vm: &dyn Uvm, grace: Duration) -> Result<ExitStatus> {
    vm.stop(StopMode::Graceful { timeout: grace }).await?;
    let status = vm.wait().await;
    if let Some(error) = vm.exit_error() {
        warn!(vm = vm.id(), %error, "VM stopped unexpectedly");
    }
    Ok(status)
}
