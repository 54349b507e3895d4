//! [`Controller`]: the control thread of one VM. It reads every event in
//! one order: guest requests (power-off, reset, panic) and a vCPU ending
//! the run stop the VM with the matching reason; commands pause and resume
//! (vCPUs parked, devices quiesced, guest clock kept), press the power
//! button, inject a crash or stop; guest ejects go to the hub.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_clock_data;
use kvm_ioctls::VmFd;
use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedReceiver;
use uvm_api::ExitCell;
use uvm_api::{ExitStatus, StopReason};
use uvm_devices::acpi::pm::PmDevice;
use uvm_devices::legacy::GuestRequest;
use uvm_devices::quiesce::Pausable;
use vmm_sys_util::signal::Killable;

use super::guest_events::GuestEvents;
use super::protocol::{Command, VmmEvent};
use crate::build::pci::PciDevices;
use crate::coalesced::Ticker;
use crate::memory::GuestMem;
use crate::pci::hub::DeviceHub;
use crate::stats::VmStats;
use crate::vcpu::control::{RunControl, Want};
use crate::vcpu::kick;

/// The control thread of one VM: its state, and the event loop.
pub struct Controller {
    /// The VM's id, for logs.
    pub(super) id: String,
    /// The VM (clock at pause and resume).
    pub(super) vm: Arc<VmFd>,
    /// The root bus and its functions: they live until the VM has stopped
    /// (dropped in [`Controller::finish`]).
    pub(super) pci: Option<PciDevices>,
    /// Where guest ejects go.
    pub(super) hub: Arc<DeviceHub>,
    /// Releases every device of the VM, once, at the stop.
    pub(super) release_devices: Option<Box<dyn FnOnce() + Send>>,
    /// Guest memory must outlive every vCPU thread (joined in `finish`).
    pub(super) _mem: Arc<GuestMem>,
    /// The ACPI PM block (power button).
    pub(super) pm: Arc<Mutex<PmDevice>>,
    /// What the vCPU threads are told.
    pub(super) control: Arc<RunControl>,
    /// The vCPU threads.
    pub(super) threads: Vec<JoinHandle<()>>,
    /// What the guest reported (ejects pending).
    pub(super) guest: Arc<GuestEvents>,
    /// Events and commands.
    pub(super) inbox: UnboundedReceiver<VmmEvent>,
    /// State and exit status.
    pub(super) lifecycle: Arc<ExitCell>,
    /// Figures frozen at the stop.
    pub(super) stats: Arc<VmStats>,
    /// The guest clock saved at pause.
    pub(super) saved_clock: Option<kvm_clock_data>,
    /// Hands held port writes over when no vCPU exit does; stopped (and
    /// the rest handed over) once the vCPUs have ended.
    pub(super) ticker: Option<Ticker>,
}

/// How long the vCPUs have to park (pause) or end (stop).
pub(super) const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a pause kicks vCPUs that have not parked yet.
const KICK_INTERVAL: Duration = Duration::from_millis(20);

impl Controller {
    /// The event loop; returns once the VM has stopped.
    pub fn run(mut self) {
        while let Some(event) = self.inbox.blocking_recv() {
            let status = match event {
                VmmEvent::Guest(GuestRequest::PowerOff) => {
                    ExitStatus::with_detail(StopReason::Shutdown, "ACPI S5")
                }
                VmmEvent::Guest(GuestRequest::Reset) => {
                    ExitStatus::with_detail(StopReason::Reboot, "reset requested")
                }
                VmmEvent::Guest(GuestRequest::Panic) => {
                    ExitStatus::with_detail(StopReason::GuestPanic, "the guest kernel panicked")
                }
                VmmEvent::VcpuEnded {
                    status: Some(status),
                    ..
                } => status,
                VmmEvent::VcpuEnded {
                    index,
                    status: None,
                } => {
                    tracing::debug!(vm = %self.id, vcpu = index, "vCPU thread ended");
                    continue;
                }
                VmmEvent::DeviceFailed(reason) => {
                    ExitStatus::with_detail(StopReason::VmmError, reason)
                }
                VmmEvent::GuestEjects => {
                    let slots = self.guest.take_ejects();
                    for slot in (0..u32::BITS as u8).filter(|s| slots & (1 << s) != 0) {
                        self.hub.on_eject(slot);
                    }
                    continue;
                }
                VmmEvent::Command(Command::Pause(reply)) => {
                    let _ = reply.send(self.pause());
                    continue;
                }
                VmmEvent::Command(Command::Resume(reply)) => {
                    let _ = reply.send(self.resume());
                    continue;
                }
                VmmEvent::Command(Command::PowerButton(reply)) => {
                    let enabled = self.pm.lock().press_power_button();
                    tracing::info!(vm = %self.id, "power button pressed (guest listening: {enabled})");
                    let _ = reply.send(enabled);
                    continue;
                }
                VmmEvent::Command(Command::ParkedAt(reply)) => {
                    let _ = reply.send(self.control.parked_at());
                    continue;
                }
                VmmEvent::Command(Command::InjectCrash(reply)) => {
                    let running = self.threads.first().is_some_and(|t| !t.is_finished());
                    if running {
                        tracing::warn!(vm = %self.id, "injecting a triple fault into vCPU 0");
                        self.control.request_crash();
                        self.kick_all();
                    }
                    let _ = reply.send(running);
                    continue;
                }
                VmmEvent::Command(Command::Stop(status, reply)) => {
                    self.finish(status);
                    let _ = reply.send(());
                    return;
                }
            };
            self.finish(status);
            return;
        }
    }

    /// Kicks every running vCPU thread out of `KVM_RUN`.
    pub(super) fn kick_all(&self) {
        for t in &self.threads {
            if !t.is_finished()
                && let Err(e) = t.kill(kick::kick_signal())
            {
                tracing::debug!(vm = %self.id, "kick failed: {e}");
            }
        }
    }

    fn pause(&mut self) -> Result<(), String> {
        self.control.set(Want::Pause);
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            self.kick_all();
            if self.control.wait_parked(self.threads.len(), KICK_INTERVAL) {
                break;
            }
            if Instant::now() >= deadline {
                self.control.set(Want::Run);
                return Err(format!("the vCPUs did not park within {PAUSE_TIMEOUT:?}"));
            }
        }
        // The devices stop too: no queue is processed and no guest memory
        // written until resume.
        if let Some(pci) = self.pci.as_ref()
            && let Err(e) = pci.root.lock().pause()
        {
            self.control.set(Want::Run);
            return Err(format!("a device did not pause: {e}"));
        }
        match self.vm.get_clock() {
            Ok(clock) => self.saved_clock = Some(clock),
            Err(e) => {
                tracing::warn!(vm = %self.id, "KVM_GET_CLOCK at pause failed: {e}; guest time may jump at resume");
                self.saved_clock = None;
            }
        }
        tracing::info!(vm = %self.id, "paused");
        Ok(())
    }

    fn resume(&mut self) -> Result<(), String> {
        if let Some(mut clock) = self.saved_clock.take() {
            // Flags such as KVM_CLOCK_REALTIME would make KVM add the time
            // spent paused; set the saved value as is.
            clock.flags = 0;
            match self.vm.set_clock(&clock) {
                Ok(()) => {
                    self.stats.clock_restores.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(vm = %self.id, "KVM_SET_CLOCK at resume failed: {e}; guest time jumps");
                }
            }
        }
        if let Some(pci) = self.pci.as_ref()
            && let Err(e) = pci.root.lock().resume()
        {
            tracing::error!(vm = %self.id, "a device did not resume: {e}");
        }
        self.control.set(Want::Run);
        tracing::info!(vm = %self.id, "resumed");
        Ok(())
    }
}
