//! [`VmInner`]: everything one VM of the kvm backend is, and what each
//! lifecycle operation does to it. The facade ([`super::KvmUvm`]) runs one
//! operation at a time; nothing here takes that lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use uvm_api::{
    Action, Error, ExitCell, ExitStatus, Result, State, StopMode, StopReason, UvmConfig,
};

use crate::arch::boot::BootSpec;
use crate::arch::boot::linux::LinuxBoot;
use crate::build;
use crate::console::ConsoleTap;
use crate::control::protocol::{Command, VmmHandle};
use crate::control::{self, teardown};
use crate::error::VmmError;
use crate::guest_probe::KvmGuestProbe;
use crate::managers::Managers;
use crate::stats::VmStats;

/// One VM: configuration, state, the running VMM's handle, devices.
pub struct VmInner {
    pub(super) config: UvmConfig,
    boot: Option<BootSpec>,
    pub(super) cell: Arc<ExitCell>,
    pub(super) stats: Arc<VmStats>,
    pub(super) console: Arc<ConsoleTap>,
    handle: Arc<Mutex<Option<VmmHandle>>>,
    pub(super) managers: Arc<Managers>,
    pub(super) probe: KvmGuestProbe,
}

impl VmInner {
    /// A VM that boots `config.kernel` (checked at start), or runs `boot`
    /// instead, with the configuration's boot-time devices added.
    pub(super) fn new(
        config: UvmConfig,
        boot: Option<BootSpec>,
        virtiofsd: Option<PathBuf>,
    ) -> Result<Self> {
        let cell = Arc::new(ExitCell::new());
        let handle = Arc::new(Mutex::new(None));
        let managers = Arc::new(Managers::new(&config, cell.clone(), virtiofsd));
        let probe = KvmGuestProbe::new(managers.vsock.clone(), handle.clone());
        if let Err(e) = managers.add_boot_devices(&config.devices) {
            managers.release();
            return Err(e);
        }
        Ok(VmInner {
            config,
            boot,
            cell,
            stats: Arc::new(VmStats::default()),
            console: Arc::new(ConsoleTap::default()),
            handle,
            managers,
            probe,
        })
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

    /// The running VMM's handle, once started.
    pub(super) fn vmm(&self) -> Option<VmmHandle> {
        self.handle.lock().clone()
    }

    /// Ends a VM that never ran with `status` (see [`teardown`]).
    fn end_unstarted(&self, status: ExitStatus) {
        teardown::never_started(|| self.managers.release(), &self.cell, status);
    }

    /// Builds the VM on a blocking thread and launches it; any failure
    /// before the guest runs ends the VM with `StartFailed`.
    pub(super) async fn start(&self) -> Result<()> {
        self.cell.state().check(Action::Start)?;
        let vsock_device = match self.managers.vsock.boot_device() {
            Ok(d) => d,
            Err(e) => {
                self.end_unstarted(ExitStatus::with_detail(
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
            let hub = self.managers.hub().clone();
            let counters = self.stats.counters.clone();
            tokio::task::spawn_blocking(move || {
                build::prepare(&config, &boot, tap, vsock_device, &hub, &counters)
            })
            .await
            .map_err(|e| VmmError::Control(format!("VM set-up thread failed: {e}")))?
        }
        .await;
        let launched = prepared.and_then(|prepared| {
            if !self.cell.set_unless_stopped(State::Running) {
                return Err(VmmError::Gone);
            }
            self.managers
                .vsock
                .set_transport(prepared.pci().vsock.clone());
            let managers = self.managers.clone();
            control::launch(
                prepared,
                self.managers.hub().clone(),
                self.cell.clone(),
                self.stats.clone(),
                Box::new(move || managers.release()),
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
                self.end_unstarted(ExitStatus::with_detail(
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
                self.cell.finish(status);
                self.cell.wait().await;
            }
            None => self.end_unstarted(status),
        }
    }

    /// `stop` in `mode`: a graceful stop presses the ACPI power button and
    /// forces after the timeout.
    pub(super) async fn stop(&self, mode: StopMode) -> Result<()> {
        let state = self.cell.state();
        state.check(Action::Stop)?;
        let killed = |detail: &str| ExitStatus::with_detail(StopReason::Killed, detail);
        match (state, mode) {
            (State::Stopped, _) => {}
            (State::Running, StopMode::Graceful { timeout }) => {
                self.graceful(timeout).await;
            }
            (State::Running, StopMode::Force) => self.force(killed("stopped by force")).await,
            (State::Created | State::Paused, _) => {
                self.force(killed("stopped while not running")).await;
            }
        }
        Ok(())
    }

    async fn graceful(&self, timeout: Duration) {
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
        if tokio::time::timeout(timeout, self.cell.wait())
            .await
            .is_err()
        {
            tracing::info!("the guest did not power off within {timeout:?}; forcing");
            self.force(ExitStatus::with_detail(
                StopReason::Killed,
                "graceful stop timed out; stopped by force",
            ))
            .await;
        }
    }

    /// `pause` or `resume`, through the control thread.
    pub(super) async fn pause_or_resume(&self, action: Action) -> Result<()> {
        let next = self.cell.state().check(action)?;
        let vmm = self.vmm().ok_or(Error::InvalidState {
            operation: action.as_str().into(),
            state: self.cell.state(),
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
                if self.cell.set_unless_stopped(next) {
                    Ok(())
                } else {
                    Err(stopped())
                }
            }
            Ok(Err(message)) => Err(Error::backend(VmmError::Control(message))),
            Err(_) => Err(stopped()),
        }
    }

    /// See [`super::KvmUvm::parked_at`].
    pub(super) async fn parked_at(&self) -> Vec<(u8, String)> {
        let Some(vmm) = self.vmm() else {
            return Vec::new();
        };
        let (tx, rx) = oneshot::channel();
        if vmm.send(Command::ParkedAt(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The last handle went while the VM had not stopped: it is stopped by
    /// force (the guest would otherwise run on with nobody to stop it).
    pub(super) fn abandon(&self) {
        if self.cell.state().is_stopped() {
            return;
        }
        let status = ExitStatus::with_detail(StopReason::Killed, "the VM's handle was dropped");
        match self.vmm() {
            Some(vmm) => {
                tracing::warn!(vm = %self.config.id, "dropped while not stopped; stopping it");
                let (tx, _rx) = oneshot::channel();
                if vmm.send(Command::Stop(status, tx)).is_err() {
                    self.managers.release();
                }
            }
            None => self.end_unstarted(status),
        }
    }
}
