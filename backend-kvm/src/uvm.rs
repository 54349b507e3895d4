//! [`KvmUvm`]: one VM of the KVM backend behind the [`Uvm`] trait.
//!
//! `create` only validates; `start` builds the VM (memory, devices, vCPUs,
//! boot image) on a blocking thread and launches it, so every failure before
//! the guest runs (no `/dev/kvm`, missing or bad kernel, KVM errors) ends the
//! VM with `StartFailed` and the cause. Operations are serialised by an
//! async lock; the guest may end the run at any time (the first exit wins).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::Instrument;
use uvm_api::{
    Action, BootDevices, Error, ExitStatus, GuestProbe, NetworkManager, Operation, Resource,
    Result, ScsiManager, SharedFolderManager, State, Stats, StopMode, StopReason, Uvm, UvmConfig,
    VmSocketManager, VpmemManager, op_span,
};

use crate::arch::boot::BootSpec;
use crate::arch::boot::linux::LinuxBoot;
use crate::build;
use crate::console::ConsoleTap;
use crate::control::{
    self,
    protocol::{Command, VmmHandle},
};
use crate::error::VmmError;
use crate::guest_probe::KvmGuestProbe;
use crate::lifecycle::Lifecycle;
use crate::managers::ManagerContext;
use crate::managers::net::KvmNetwork;
use crate::managers::pmem::KvmVpmem;
use crate::managers::scsi::KvmScsi;
use crate::managers::shares::KvmShares;
use crate::pci::hub::DeviceHub;
use crate::stats;
use crate::stats::VmStats;
use crate::vsock::KvmVsock;

/// The capability managers of a VM.
struct Managers {
    scsi: KvmScsi,
    vpmem: KvmVpmem,
    network: KvmNetwork,
    shares: KvmShares,
}

impl Managers {
    /// The VM stopped: pending removals complete, device threads stop.
    fn shut_down(&self) {
        self.scsi.shut_down();
        self.vpmem.shut_down();
        self.network.shut_down();
        self.shares.shut_down();
    }

    /// Adds the configuration's boot-time devices (cold plug).
    fn add_boot_devices(&self, devices: &BootDevices) -> Result<()> {
        for index in 0..devices.scsi_controllers {
            self.scsi.do_add_controller(index)?;
        }
        for disk in &devices.scsi_disks {
            self.scsi.do_add_disk(disk.clone())?;
        }
        if let Some(controller) = devices.vpmem {
            self.vpmem.do_add_controller(controller)?;
        }
        for device in &devices.vpmem_devices {
            self.vpmem.do_add_device(device.clone())?;
        }
        for nic in &devices.nics {
            self.network.do_add_nic(nic.clone())?;
        }
        for share in &devices.shares {
            self.shares.do_add_share(share.clone())?;
        }
        Ok(())
    }
}

/// A VM of the KVM backend.
pub struct KvmUvm {
    config: UvmConfig,
    boot: Option<BootSpec>,
    lifecycle: Arc<Lifecycle>,
    stats: Arc<VmStats>,
    console: Arc<ConsoleTap>,
    handle: Arc<Mutex<Option<VmmHandle>>>,
    vsock: Arc<KvmVsock>,
    hub: Arc<DeviceHub>,
    managers: Arc<Managers>,
    probe: KvmGuestProbe,
    op: tokio::sync::Mutex<()>,
}

impl KvmUvm {
    /// A VM that boots `config.kernel` (checked at start), or runs
    /// `payload`, with the configuration's boot-time devices added.
    /// `virtiofsd` serves shared folders (none without it).
    pub(crate) fn new(
        config: UvmConfig,
        boot: Option<BootSpec>,
        virtiofsd: Option<PathBuf>,
    ) -> Result<Self> {
        let lifecycle = Arc::new(Lifecycle::default());
        let handle = Arc::new(Mutex::new(None));
        let vsock = Arc::new(KvmVsock::new(&config.id, lifecycle.clone()));
        let probe = KvmGuestProbe::new(vsock.clone(), handle.clone());
        let hub = Arc::new(DeviceHub::new(&config.id));
        let ctx = ManagerContext {
            vm_id: config.id.clone(),
            lifecycle: lifecycle.clone(),
            hub: hub.clone(),
        };
        let managers = Arc::new(Managers {
            scsi: KvmScsi::new(ctx.clone()),
            vpmem: KvmVpmem::new(ctx.clone(), config.memory_mib << 20),
            network: KvmNetwork::new(ctx.clone()),
            shares: KvmShares::new(ctx, virtiofsd),
        });
        if let Err(e) = managers.add_boot_devices(&config.devices) {
            managers.shut_down();
            hub.shut_down();
            return Err(e);
        }
        Ok(KvmUvm {
            config,
            boot,
            lifecycle,
            stats: Arc::new(VmStats::default()),
            console: Arc::new(ConsoleTap::default()),
            handle,
            vsock,
            hub,
            managers,
            probe,
            op: tokio::sync::Mutex::new(()),
        })
    }

    /// Releases every device of a VM that has stopped (or never ran).
    fn release_devices(&self) {
        self.hub.shut_down();
        self.managers.shut_down();
    }

    /// The VM's vsock manager with its concrete type.
    pub fn vsock(&self) -> &Arc<KvmVsock> {
        &self.vsock
    }

    /// The console output so far (the last 1 MiB), whatever the configured sink.
    pub fn console_output(&self) -> String {
        self.console.text()
    }

    /// Waits until the console output contains `needle`; returns how long
    /// that took from the call, or `Timeout`.
    pub async fn wait_for_console(&self, needle: &str, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        if self.console.wait_for(needle, timeout).await {
            Ok(started.elapsed())
        } else {
            Err(Error::Timeout {
                operation: format!("console output {needle:?}"),
                after: timeout,
            })
        }
    }

    fn boot_spec(&self) -> std::result::Result<BootSpec, VmmError> {
        if let Some(boot) = &self.boot {
            return Ok(boot.clone());
        }
        let kernel = self
            .config
            .kernel
            .clone()
            .ok_or_else(|| VmmError::Config("the configuration names no kernel".into()))?;
        Ok(BootSpec::Linux(LinuxBoot {
            kernel,
            initrd: self.config.initrd.clone(),
            cmdline: self.config.cmdline.clone(),
        }))
    }

    fn vmm(&self) -> Option<VmmHandle> {
        self.handle.lock().clone()
    }

    async fn do_start(&self) -> Result<()> {
        let _op = self.op.lock().await;
        self.lifecycle.state().check(Action::Start)?;
        let vsock_device = match self.vsock.boot_device() {
            Ok(d) => d,
            Err(e) => {
                self.lifecycle.finish(ExitStatus::with_detail(
                    StopReason::StartFailed,
                    e.to_string(),
                ));
                return Err(e);
            }
        };
        let prepared = async {
            let boot = self.boot_spec()?;
            let config = self.config.clone();
            let tap = self.console.clone();
            let hub = self.hub.clone();
            tokio::task::spawn_blocking(move || {
                build::prepare(&config, &boot, tap, vsock_device, &hub)
            })
            .await
            .map_err(|e| VmmError::Control(format!("VM set-up thread failed: {e}")))?
        }
        .await;
        let launched = prepared.and_then(|prepared| {
            if !self.lifecycle.set_unless_stopped(State::Running) {
                return Err(VmmError::Gone);
            }
            self.vsock.set_transport(prepared.pci().vsock.clone());
            let vsock = self.vsock.clone();
            let managers = self.managers.clone();
            control::launch(
                prepared,
                self.hub.clone(),
                self.lifecycle.clone(),
                self.stats.clone(),
                Box::new(move || {
                    vsock.shut_down();
                    managers.shut_down();
                }),
            )
        });
        match launched {
            Ok(handle) => {
                *self.handle.lock() = Some(handle);
                tracing::info!("started");
                Ok(())
            }
            Err(e) => {
                tracing::warn!("start failed: {e}");
                self.release_devices();
                self.lifecycle.finish(ExitStatus::with_detail(
                    StopReason::StartFailed,
                    e.to_string(),
                ));
                Err(e.into())
            }
        }
    }

    /// Stops by force with `status`; returns once the VM has stopped.
    async fn force(&self, status: ExitStatus) {
        match self.vmm() {
            Some(vmm) => {
                let (tx, rx) = oneshot::channel();
                if vmm.send(Command::Stop(status.clone(), tx)).is_ok() {
                    let _ = rx.await;
                }
                // The control thread may have ended on its own first.
                self.lifecycle.finish(status);
                self.lifecycle.wait().await;
            }
            None => {
                self.lifecycle.finish(status);
                self.release_devices();
            }
        }
    }

    async fn do_stop(&self, mode: StopMode) -> Result<()> {
        let _op = self.op.lock().await;
        let state = self.lifecycle.state();
        state.check(Action::Stop)?;
        let killed = |detail: &str| ExitStatus::with_detail(StopReason::Killed, detail);
        match (state, mode) {
            (State::Stopped, _) => {}
            (State::Running, StopMode::Graceful { timeout }) => {
                let (tx, rx) = oneshot::channel();
                let pressed = match self.vmm() {
                    Some(vmm) => vmm.send(Command::PowerButton(tx)).is_ok(),
                    None => false,
                };
                let listening = pressed && rx.await.unwrap_or(false);
                if !listening {
                    tracing::info!(
                        "the guest has not enabled the power button yet; waiting {timeout:?} anyway"
                    );
                }
                if tokio::time::timeout(timeout, self.lifecycle.wait())
                    .await
                    .is_err()
                {
                    tracing::info!("the guest did not power off within {timeout:?}; forcing");
                    self.force(killed("graceful stop timed out; stopped by force"))
                        .await;
                }
            }
            (State::Running, StopMode::Force) => self.force(killed("stopped by force")).await,
            (State::Created | State::Paused, _) => {
                self.force(killed("stopped while not running")).await;
            }
        }
        Ok(())
    }

    async fn pause_or_resume(&self, action: Action) -> Result<()> {
        let _op = self.op.lock().await;
        let next = self.lifecycle.state().check(action)?;
        let vmm = self.vmm().ok_or(Error::InvalidState {
            operation: action.as_str().into(),
            state: self.lifecycle.state(),
        })?;
        let (tx, rx) = oneshot::channel();
        let command = if action == Action::Pause {
            Command::Pause(tx)
        } else {
            Command::Resume(tx)
        };
        let stopped = || Error::InvalidState {
            operation: action.as_str().into(),
            state: State::Stopped,
        };
        vmm.send(command).map_err(|_| stopped())?;
        match rx.await {
            Ok(Ok(())) => {
                if self.lifecycle.set_unless_stopped(next) {
                    Ok(())
                } else {
                    Err(stopped())
                }
            }
            Ok(Err(message)) => Err(Error::backend(VmmError::Control(message))),
            Err(_) => Err(stopped()),
        }
    }
}

/// Dropping the last handle of a VM that has not stopped stops it by
/// force (the guest would otherwise run on with nobody to stop it) and
/// releases its devices.
impl Drop for KvmUvm {
    fn drop(&mut self) {
        if self.lifecycle.state().is_stopped() {
            return;
        }
        let status = ExitStatus::with_detail(StopReason::Killed, "the VM's handle was dropped");
        match self.vmm() {
            Some(vmm) => {
                tracing::warn!(vm = %self.config.id, "dropped while not stopped; stopping it");
                let (tx, _rx) = oneshot::channel();
                if vmm.send(Command::Stop(status, tx)).is_err() {
                    self.release_devices();
                }
            }
            None => {
                self.lifecycle.finish(status);
                self.release_devices();
            }
        }
    }
}

#[async_trait]
impl Uvm for KvmUvm {
    fn id(&self) -> &str {
        &self.config.id
    }

    fn state(&self) -> State {
        self.lifecycle.state()
    }

    async fn start(&self) -> Result<()> {
        self.do_start()
            .instrument(op_span(&self.config.id, "start"))
            .await
    }

    async fn stop(&self, mode: StopMode) -> Result<()> {
        self.do_stop(mode)
            .instrument(op_span(&self.config.id, "stop"))
            .await
    }

    async fn pause(&self) -> Result<()> {
        self.pause_or_resume(Action::Pause)
            .instrument(op_span(&self.config.id, "pause"))
            .await
    }

    async fn resume(&self) -> Result<()> {
        self.pause_or_resume(Action::Resume)
            .instrument(op_span(&self.config.id, "resume"))
            .await
    }

    async fn save(&self, _dest: &Path) -> Result<()> {
        Err(Error::ActionNotSupported {
            action: Action::Save,
        })
    }

    async fn wait(&self) -> ExitStatus {
        self.lifecycle.wait().await
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.lifecycle.exit_status()
    }

    async fn stats(&self) -> Result<Stats> {
        Ok(stats::collect(
            &self.lifecycle,
            &self.stats,
            self.config.memory_mib << 20,
            &self.console,
        ))
    }

    fn supported(&self, resource: Resource, operation: Operation) -> bool {
        crate::backend::supports(resource, operation, self.managers.shares.available())
    }

    fn supports_action(&self, action: Action) -> bool {
        matches!(
            action,
            Action::Start | Action::Stop | Action::Pause | Action::Resume
        )
    }

    fn scsi(&self) -> Option<&dyn ScsiManager> {
        Some(&self.managers.scsi)
    }

    fn vpmem(&self) -> Option<&dyn VpmemManager> {
        Some(&self.managers.vpmem)
    }

    fn network(&self) -> Option<&dyn NetworkManager> {
        Some(&self.managers.network)
    }

    fn shared_folders(&self) -> Option<&dyn SharedFolderManager> {
        self.managers
            .shares
            .available()
            .then_some(&self.managers.shares as &dyn SharedFolderManager)
    }

    fn vm_socket(&self) -> Option<&dyn VmSocketManager> {
        Some(&*self.vsock)
    }

    fn guest_probe(&self) -> Option<&dyn GuestProbe> {
        Some(&self.probe)
    }
}
