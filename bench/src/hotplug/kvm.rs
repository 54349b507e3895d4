//! backend-kvm's guest for the hot-add runs: one VM booted like
//! `boot-bench` does (1 vCPU, the guest assets' kernel, initramfs and
//! command line) with the controllers the kinds need present from boot,
//! measured as an [`ApiTarget`].

use std::time::{Duration, Instant};

use uvm_api::{GuestProbe, StopMode, Uvm};
use uvm_backend_kvm::KvmUvm;

use super::api::{ApiTarget, add_controllers};
use super::device::Names;
use super::kind::Kind;
use crate::error::{BenchError, Result};
use crate::kvm::{KvmRun, console_tail, create};

/// The VMM's name in reports.
pub const VMM: &str = "backend-kvm";

/// Creates the VM (with the controllers `kinds` need), starts it and waits
/// until the guest agent answers; returns the target and the time from
/// `start()` to that answer.
pub async fn boot(guest: &KvmRun<'_>, kinds: &[Kind]) -> Result<(ApiTarget, Duration)> {
    let (vm, after) = boot_vm(guest, kinds, "hotplug-bench").await?;
    Ok((ApiTarget::new(Box::new(vm), VMM, Names::KVM), after))
}

/// Like [`boot`], returning backend-kvm's VM itself (named `id`), for
/// callers that need more of it than the [`ApiTarget`] offers (its vsock
/// manager as an `Arc`).
pub async fn boot_vm(guest: &KvmRun<'_>, kinds: &[Kind], id: &str) -> Result<(KvmUvm, Duration)> {
    let vm = create(guest, id)?;
    match start(&vm, guest, kinds).await {
        Ok(after) => Ok((vm, after)),
        Err(e) => {
            eprintln!(
                "{id}: backend-kvm: guest console tail:\n{}",
                console_tail(&vm, 30)
            );
            let _ = vm.stop(StopMode::Force).await;
            let _ = tokio::time::timeout(Duration::from_secs(30), vm.wait()).await;
            Err(e)
        }
    }
}

async fn start(vm: &KvmUvm, guest: &KvmRun<'_>, kinds: &[Kind]) -> Result<Duration> {
    add_controllers(vm, kinds).await?;
    let started = Instant::now();
    vm.start().await.map_err(BenchError::uvm("start"))?;
    let probe = vm
        .guest_probe()
        .ok_or_else(|| BenchError::Vm("backend-kvm offers no guest probe".into()))?;
    tokio::select! {
        answered = agent_up(probe, started, guest.timeout) => answered,
        status = vm.wait() => {
            Err(BenchError::Vm(format!("the VM stopped while booting: {status}")))
        }
    }
}

/// Asks `probe` for the uptime until it answers; returns the time since
/// `started`.
pub async fn agent_up(
    probe: &dyn GuestProbe,
    started: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        match probe.uptime().await {
            Ok(_) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() >= timeout => {
                return Err(BenchError::Vm(format!("the agent did not answer: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
