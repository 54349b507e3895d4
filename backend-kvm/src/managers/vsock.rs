//! [`KvmVsock`]: the VM's [`VmSocketManager`] over the in-process
//! virtio-vsock device and its host multiplexer ([`VsockHost`]).
//!
//! The device exists from the first `listen` (or from `start`), so host
//! listeners can be opened before the guest boots; it becomes the
//! virtio-pci function at [`crate::pci::slots::VSOCK`] when the VM starts.
//! The guest's CID is [`GUEST_CID`].
//!
//! - `listen` is allowed while created, running or paused; a second
//!   listener on a port gives `AlreadyExists`. Its `accept` fails with
//!   `InvalidState` once the VM has stopped (a pending accept included).
//! - `connect` is allowed while running. While the guest's vsock driver is
//!   not up yet (booting, or reset by the guest) it is refused at once
//!   (`Io`, `ConnectionRefused`: nobody can be listening), like a guest
//!   RST; otherwise it waits at most [`CONNECT_TIMEOUT`] for the guest's
//!   answer, so a hung guest cannot hang the caller.
//! - When the VM stops, the device is reset: open streams fail with
//!   `ConnectionReset`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use uvm_api::ExitCell;
use uvm_api::{
    Action, Error, Resource, Result, State, VmSocketManager, VsockListener, VsockStream,
    validate_port,
};
use uvm_devices::virtio::VirtioDevice;
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::vsock::{HostListener, MuxerError, VsockDevice, VsockHost};

/// The guest's vsock CID.
pub const GUEST_CID: u64 = 3;
/// How long a host `connect` waits for the guest to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The vsock manager of one VM.
pub struct KvmVsock {
    vm_id: String,
    lifecycle: Arc<ExitCell>,
    host: VsockHost,
    transport: Mutex<Option<Arc<Mutex<VirtioPciDevice>>>>,
}

impl KvmVsock {
    /// A manager for the VM `vm_id` whose lifecycle is `lifecycle`.
    pub fn new(vm_id: &str, lifecycle: Arc<ExitCell>) -> Self {
        KvmVsock {
            vm_id: vm_id.to_owned(),
            lifecycle,
            host: VsockHost::new(GUEST_CID),
            transport: Mutex::new(None),
        }
    }

    /// The device model to put behind the virtio-pci transport at start
    /// (its pump task runs on the tokio runtime of the caller).
    pub(crate) fn boot_device(&self) -> Result<Box<dyn VirtioDevice>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::backend(crate::error::VmmError::Config(format!(
                "vsock needs a tokio runtime: {e}"
            )))
        })?;
        Ok(Box::new(VsockDevice::new(
            GUEST_CID,
            self.host.backend(),
            &runtime,
        )))
    }

    /// Records the transport (to know whether the guest driver is up).
    pub(crate) fn set_transport(&self, transport: Arc<Mutex<VirtioPciDevice>>) {
        *self.transport.lock() = Some(transport);
    }

    /// Whether the guest's driver runs the device now.
    fn driver_up(&self) -> bool {
        self.transport
            .lock()
            .as_ref()
            .is_some_and(|t| t.lock().is_active())
    }

    /// The device status as the guest wrote it, for messages (`None`
    /// before start).
    fn device_status(&self) -> Option<u8> {
        self.transport.lock().as_ref().map(|t| t.lock().status())
    }

    /// Every connection is reset, listeners stay (the VM has stopped;
    /// `accept` then fails with `InvalidState`).
    pub(crate) fn shut_down(&self) {
        self.host.reset_connections();
        *self.transport.lock() = None;
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        self.host.connection_count()
    }
}

#[async_trait]
impl VmSocketManager for KvmVsock {
    async fn listen(&self, port: u32) -> Result<Box<dyn VsockListener>> {
        self.lifecycle.state().check(Action::Listen)?;
        validate_port(port)?;
        let inner = self.host.listen(port).map_err(|e| match e {
            MuxerError::PortInUse(p) => Error::already_exists(Resource::VmSocket, p.to_string()),
            other @ (MuxerError::TooManyConnections | MuxerError::BufferBudgetSpent) => {
                Error::backend(other)
            }
        })?;
        tracing::debug!(vm = %self.vm_id, port, "vsock listening");
        Ok(Box::new(KvmListener {
            inner,
            lifecycle: self.lifecycle.clone(),
        }))
    }

    async fn connect(&self, port: u32) -> Result<VsockStream> {
        self.lifecycle.state().check(Action::Connect)?;
        validate_port(port)?;
        let context = || format!("vsock connect to guest port {port}");
        if !self.driver_up() {
            let status = self
                .device_status()
                .map_or_else(|| "none".to_owned(), |s| format!("{s:#04x}"));
            return Err(Error::io(
                context(),
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!(
                        "the guest's vsock driver is not running (yet): device status {status}"
                    ),
                ),
            ));
        }
        let connecting = self.host.connect(port).map_err(Error::backend)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(stream)) => {
                tracing::debug!(vm = %self.vm_id, port, local = stream.local_port(), "vsock connected");
                Ok(Box::new(stream))
            }
            Ok(Err(e)) => Err(Error::io(context(), e)),
            Err(_) => {
                tracing::warn!(vm = %self.vm_id, port, "the guest did not answer a vsock connect");
                Err(Error::Timeout {
                    operation: context(),
                    after: CONNECT_TIMEOUT,
                })
            }
        }
    }
}

/// A host listener whose `accept` ends with the VM.
struct KvmListener {
    inner: HostListener,
    lifecycle: Arc<ExitCell>,
}

fn stopped() -> Error {
    Error::InvalidState {
        operation: "accept".into(),
        state: State::Stopped,
    }
}

#[async_trait]
impl VsockListener for KvmListener {
    fn port(&self) -> u32 {
        self.inner.port()
    }

    async fn accept(&mut self) -> Result<VsockStream> {
        if self.lifecycle.state() == State::Stopped {
            return Err(stopped());
        }
        let port = self.inner.port();
        let lifecycle = self.lifecycle.clone();
        tokio::select! {
            accepted = self.inner.accept() => match accepted {
                Ok(stream) => Ok(Box::new(stream) as VsockStream),
                Err(e) => Err(Error::io(format!("vsock accept on port {port}"), e)),
            },
            _ = lifecycle.wait() => Err(stopped()),
        }
    }
}
