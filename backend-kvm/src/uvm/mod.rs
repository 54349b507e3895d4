//! [`KvmUvm`]: one VM of the KVM backend behind the [`Uvm`] trait.
//!
//! A facade over the VM's inner state (`uvm/inner.rs`) (Kata runtime-rs's facade/inner split):
//! the facade runs one lifecycle operation at a time (an async lock) inside
//! the VM's tracing span and hands out the managers; the inner state does
//! the work without knowing about that lock. `create` only validates and
//! cold-plugs; `start` builds the VM (memory, devices, vCPUs, boot image)
//! on a blocking thread and launches it, so every failure before the guest
//! runs (no `/dev/kvm`, missing or bad kernel, KVM errors) ends the VM with
//! `StartFailed` and the cause. The guest may end the run at any time (the
//! first exit wins).

mod inner;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;
use uvm_api::{
    Action, Error, ExitStatus, GuestProbe, NetworkManager, Operation, Resource, Result,
    ScsiManager, SharedFolderManager, State, Stats, StopMode, Uvm, UvmConfig, VmSocketManager,
    VpmemManager, op_span,
};

use crate::arch::boot::BootSpec;
use crate::capabilities;
use crate::managers::vsock::KvmVsock;
use crate::stats;
use inner::VmInner;

/// A VM of the KVM backend.
pub struct KvmUvm {
    inner: VmInner,
    /// One lifecycle operation at a time.
    op: tokio::sync::Mutex<()>,
}

impl KvmUvm {
    /// A VM that boots `config.kernel` (checked at start), or runs `boot`
    /// instead, with the configuration's boot-time devices added.
    /// `virtiofsd` serves shared folders (none without it).
    pub(crate) fn new(
        config: UvmConfig,
        boot: Option<BootSpec>,
        virtiofsd: Option<PathBuf>,
    ) -> Result<Self> {
        Ok(KvmUvm {
            inner: VmInner::new(config, boot, virtiofsd)?,
            op: tokio::sync::Mutex::new(()),
        })
    }

    fn span(&self, operation: &'static str) -> tracing::Span {
        op_span(&self.inner.config.id, operation)
    }

    /// The VM's vsock manager with its concrete type.
    pub fn vsock(&self) -> &Arc<KvmVsock> {
        &self.inner.managers.vsock
    }

    /// Where each vCPU stood when the last pause parked it, by vCPU index:
    /// instruction and stack pointers, paging state and per-CPU base (see
    /// [`crate::vcpu::registers`]). For diagnosing a guest that stopped
    /// answering: pause, read this, resume. Empty before the first pause,
    /// and once the VM has stopped.
    pub async fn parked_at(&self) -> Vec<(u8, String)> {
        self.inner.parked_at().await
    }

    /// The console output so far (the last 1 MiB), whatever the configured sink.
    pub fn console_output(&self) -> String {
        self.inner.console.text()
    }

    /// Waits until the console output contains `needle`; returns how long
    /// that took from the call, or `Timeout`.
    pub async fn wait_for_console(&self, needle: &str, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        if self.inner.console.wait_for(needle, timeout).await {
            Ok(started.elapsed())
        } else {
            Err(Error::Timeout {
                operation: format!("console output {needle:?}"),
                after: timeout,
            })
        }
    }
}

/// Dropping the last handle of a VM that has not stopped stops it by
/// force and releases its devices.
impl Drop for KvmUvm {
    fn drop(&mut self) {
        self.inner.abandon();
    }
}

#[async_trait]
impl Uvm for KvmUvm {
    fn id(&self) -> &str {
        &self.inner.config.id
    }

    fn state(&self) -> State {
        self.inner.cell.state()
    }

    async fn start(&self) -> Result<()> {
        async {
            let _op = self.op.lock().await;
            self.inner.start().await
        }
        .instrument(self.span("start"))
        .await
    }

    async fn stop(&self, mode: StopMode) -> Result<()> {
        async {
            let _op = self.op.lock().await;
            self.inner.stop(mode).await
        }
        .instrument(self.span("stop"))
        .await
    }

    async fn pause(&self) -> Result<()> {
        async {
            let _op = self.op.lock().await;
            self.inner.pause_or_resume(Action::Pause).await
        }
        .instrument(self.span("pause"))
        .await
    }

    async fn resume(&self) -> Result<()> {
        async {
            let _op = self.op.lock().await;
            self.inner.pause_or_resume(Action::Resume).await
        }
        .instrument(self.span("resume"))
        .await
    }

    async fn save(&self, _dest: &Path) -> Result<()> {
        Err(Error::ActionNotSupported {
            action: Action::Save,
        })
    }

    async fn wait(&self) -> ExitStatus {
        self.inner.cell.wait().await
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.cell.exit_status()
    }

    async fn stats(&self) -> Result<Stats> {
        Ok(stats::collect(
            &self.inner.cell,
            &self.inner.stats,
            self.inner.config.memory_mib << 20,
            &self.inner.console,
        ))
    }

    fn supported(&self, resource: Resource, operation: Operation) -> bool {
        capabilities::supports(resource, operation, self.inner.managers.shares.available())
    }

    fn supports_action(&self, action: Action) -> bool {
        capabilities::supports_action(action)
    }

    fn scsi(&self) -> Option<&dyn ScsiManager> {
        Some(&self.inner.managers.scsi)
    }

    fn vpmem(&self) -> Option<&dyn VpmemManager> {
        Some(&self.inner.managers.vpmem)
    }

    fn network(&self) -> Option<&dyn NetworkManager> {
        Some(&self.inner.managers.network)
    }

    fn shared_folders(&self) -> Option<&dyn SharedFolderManager> {
        let shares = &self.inner.managers.shares;
        shares
            .available()
            .then_some(shares as &dyn SharedFolderManager)
    }

    fn vm_socket(&self) -> Option<&dyn VmSocketManager> {
        Some(&*self.inner.managers.vsock)
    }

    fn guest_probe(&self) -> Option<&dyn GuestProbe> {
        Some(&self.inner.probe)
    }
}
