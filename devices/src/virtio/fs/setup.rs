//! The setup thread of a virtio-fs device: it makes the vhost-user round
//! trips that driver status changes need (activation: SET_FEATURES,
//! SET_MEM_TABLE, the rings; reset: GET_VRING_BASE per ring), so that the
//! vCPU thread that wrote the status returns at once and never waits for
//! the daemon. Commands run in the order they were sent; each round trip
//! is bounded by the session's time limit, and an activation that fails
//! or times out marks the device as needing a reset.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::FsError;
use super::frontend::FsFrontend;
use crate::virtio::{ActivateContext, VirtioInterrupt};

/// Name of the thread.
pub const THREAD_NAME: &str = "virtio-fs-setup";

/// What the setup thread does next.
enum Command {
    /// DRIVER_OK: start the rings.
    Activate(ActivateContext),
    /// The driver reset the device: stop the rings.
    Reset,
    /// Answer once every command before it is done.
    Settle(Sender<()>),
}

/// A running setup thread; dropping it lets the queued commands finish
/// and joins the thread.
pub struct SetupThread {
    commands: Option<Sender<Command>>,
    handle: Option<JoinHandle<()>>,
}

impl SetupThread {
    /// Starts the thread for `frontend`.
    pub fn spawn(frontend: Arc<Mutex<FsFrontend>>) -> Result<Self, FsError> {
        let (commands, inbox) = channel();
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(&frontend, &inbox))
            .map_err(FsError::Thread)?;
        Ok(SetupThread {
            commands: Some(commands),
            handle: Some(handle),
        })
    }

    /// Queues an activation with `ctx`; a failure reaches the driver as
    /// DEVICE_NEEDS_RESET through `ctx.interrupt`.
    pub fn activate(&self, ctx: ActivateContext) {
        self.send(Command::Activate(ctx));
    }

    /// Queues a reset.
    pub fn reset(&self) {
        self.send(Command::Reset);
    }

    /// Waits until the commands queued so far are done.
    pub fn settle(&self) {
        let (done, wait) = channel();
        self.send(Command::Settle(done));
        // An error means the thread is gone: nothing is left to wait for.
        let _ = wait.recv();
    }

    fn send(&self, command: Command) {
        let sent = self
            .commands
            .as_ref()
            .is_some_and(|c| c.send(command).is_ok());
        if !sent {
            tracing::error!("the virtio-fs setup thread is gone; command dropped");
        }
    }
}

impl Drop for SetupThread {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("the virtio-fs setup thread panicked");
        }
    }
}

fn run(frontend: &Mutex<FsFrontend>, inbox: &Receiver<Command>) {
    while let Ok(command) = inbox.recv() {
        match command {
            Command::Activate(ctx) => {
                let interrupt: Arc<dyn VirtioInterrupt> = ctx.interrupt.clone();
                let mut frontend = frontend.lock();
                match frontend.try_activate(ctx) {
                    Ok(()) => frontend.kick_all(),
                    Err(error) => {
                        tracing::error!(%error, tag = frontend.tag(), "virtio-fs activation failed");
                        interrupt.set_needs_reset(&format!("virtio-fs activation failed: {error}"));
                    }
                }
            }
            Command::Reset => frontend.lock().deactivate(),
            Command::Settle(done) => {
                let _ = done.send(());
            }
        }
    }
}
