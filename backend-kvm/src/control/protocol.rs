//! The messages of the control thread: [`Command`]s from the async API,
//! and every [`VmmEvent`] the control thread hears (guest requests from the
//! devices, vCPU threads ending, guest ejects, commands), all on one channel
//! so that the first event that ends the run decides the exit reason.

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use uvm_api::ExitStatus;
use uvm_devices::legacy::GuestRequest;

use crate::error::VmmError;

/// A request of the async API to the control thread.
#[derive(Debug)]
pub enum Command {
    /// Park every vCPU and save the guest clock.
    Pause(oneshot::Sender<Result<(), String>>),
    /// Restore the guest clock and run again.
    Resume(oneshot::Sender<Result<(), String>>),
    /// Raise the ACPI power-button event; answers whether the guest enabled it.
    PowerButton(oneshot::Sender<bool>),
    /// Stop with this status; answered once every vCPU thread has ended.
    Stop(ExitStatus, oneshot::Sender<()>),
    /// Make the boot vCPU triple-fault (for `GuestProbe::trigger(Crash)`):
    /// answers whether the request reached a running vCPU.
    InjectCrash(oneshot::Sender<bool>),
    /// Answers where each vCPU stood when it last parked (index, register
    /// summary).
    ParkedAt(oneshot::Sender<Vec<(u8, String)>>),
}

/// Everything the control thread hears about.
#[derive(Debug)]
pub enum VmmEvent {
    /// A device reported a guest request.
    Guest(GuestRequest),
    /// A vCPU thread ended; `status` is set if the guest ended the run.
    VcpuEnded {
        /// Which vCPU.
        index: u8,
        /// Why, if the vCPU itself ended the run.
        status: Option<ExitStatus>,
    },
    /// A request of the async API.
    Command(Command),
    /// A device worker thread died (a VMM bug): the run ends with
    /// `VmmError` and this reason. Sent at most once per worker.
    DeviceFailed(String),
    /// The guest ejected PCI slots: take them with
    /// [`super::guest_events::GuestEvents::take_ejects`] (one event however
    /// many ejects; see [`super::guest_events`]).
    GuestEjects,
}

/// The handle the async API keeps: the command channel.
#[derive(Debug, Clone)]
pub struct VmmHandle {
    tx: UnboundedSender<VmmEvent>,
}

impl VmmHandle {
    /// A handle sending on `tx`.
    pub fn new(tx: UnboundedSender<VmmEvent>) -> Self {
        VmmHandle { tx }
    }

    /// Sends a command; `Gone` if the control thread has ended.
    pub fn send(&self, command: Command) -> Result<(), VmmError> {
        self.tx
            .send(VmmEvent::Command(command))
            .map_err(|_| VmmError::Gone)
    }
}
