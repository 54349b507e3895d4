//! [`KvmVsock`]: the VM's [`VmSocketManager`] over the in-process
//! virtio-vsock device and its host multiplexer ([`VsockHost`]).
//!
//! The device exists from the first `listen` (or from `start`), so host
//! listeners can be opened before the guest boots; it becomes the
//! virtio-pci function at [`crate::pci::VSOCK_SLOT`] when the VM starts.
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

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use uvm_api::{
    Action, Error, Resource, Result, State, VmSocketManager, VsockListener, VsockStream,
    validate_port,
};
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::vsock::{HostListener, MuxerError, VsockDevice, VsockHost};
use uvm_devices::virtio::{ActivateContext, DeviceError, VirtioDevice};

use crate::lifecycle::Lifecycle;

/// The guest's vsock CID.
pub const GUEST_CID: u64 = 3;
/// How long a host `connect` waits for the guest to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The device and its host handle, created on first use.
struct Parts {
    device: Arc<Mutex<VsockDevice>>,
    host: VsockHost,
}

/// The vsock manager of one VM.
pub struct KvmVsock {
    vm_id: String,
    lifecycle: Arc<Lifecycle>,
    parts: Mutex<Option<Arc<Parts>>>,
    transport: Mutex<Option<Arc<Mutex<VirtioPciDevice>>>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KvmVsock {
    /// A manager for the VM `vm_id` whose lifecycle is `lifecycle`.
    pub fn new(vm_id: &str, lifecycle: Arc<Lifecycle>) -> Self {
        KvmVsock {
            vm_id: vm_id.to_owned(),
            lifecycle,
            parts: Mutex::new(None),
            transport: Mutex::new(None),
        }
    }

    /// The device, created on first use (its pump task runs on the tokio
    /// runtime of the caller).
    fn parts(&self) -> Result<Arc<Parts>> {
        let mut slot = lock(&self.parts);
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::backend(crate::error::VmmError::Config(format!(
                "vsock needs a tokio runtime: {e}"
            )))
        })?;
        let device = VsockDevice::new(GUEST_CID, &runtime);
        let host = device.host();
        let parts = Arc::new(Parts {
            device: Arc::new(Mutex::new(device)),
            host,
        });
        *slot = Some(parts.clone());
        Ok(parts)
    }

    /// The device model to put behind the virtio-pci transport at start.
    pub(crate) fn boot_device(&self) -> Result<Box<dyn VirtioDevice>> {
        Ok(Box::new(SharedVsock {
            vm_id: self.vm_id.clone(),
            device: self.parts()?.device.clone(),
        }))
    }

    /// Records the transport (to know whether the guest driver is up).
    pub(crate) fn set_transport(&self, transport: Arc<Mutex<VirtioPciDevice>>) {
        *lock(&self.transport) = Some(transport);
    }

    /// Whether the guest's driver runs the device now.
    fn driver_up(&self) -> bool {
        lock(&self.transport)
            .as_ref()
            .is_some_and(|t| lock(t).is_active())
    }

    /// Resets the device: every connection is reset, listeners stay (the
    /// VM has stopped; `accept` then fails with `InvalidState`).
    pub(crate) fn shut_down(&self) {
        if let Some(parts) = lock(&self.parts).as_ref() {
            lock(&parts.device).reset();
        }
        *lock(&self.transport) = None;
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.parts)
            .as_ref()
            .map_or(0, |p| p.host.connection_count())
    }
}

#[async_trait]
impl VmSocketManager for KvmVsock {
    async fn listen(&self, port: u32) -> Result<Box<dyn VsockListener>> {
        self.lifecycle.state().check(Action::Listen)?;
        validate_port(port)?;
        let inner = self.parts()?.host.listen(port).map_err(|e| match e {
            MuxerError::PortInUse(p) => Error::already_exists(Resource::VmSocket, p.to_string()),
            other @ MuxerError::TooManyConnections => Error::backend(other),
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
            return Err(Error::io(
                context(),
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "the guest's vsock driver is not running (yet)",
                ),
            ));
        }
        let connecting = self.parts()?.host.connect(port).map_err(Error::backend)?;
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
    lifecycle: Arc<Lifecycle>,
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

/// The vsock device shared between the transport (which owns a box of this)
/// and the manager (which resets it when the VM stops).
struct SharedVsock {
    vm_id: String,
    device: Arc<Mutex<VsockDevice>>,
}

impl VirtioDevice for SharedVsock {
    fn device_type(&self) -> u32 {
        lock(&self.device).device_type()
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        lock(&self.device).queue_max_sizes()
    }

    fn device_features(&self) -> u64 {
        lock(&self.device).device_features()
    }

    fn ack_features(&mut self, features: u64) {
        lock(&self.device).ack_features(features);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        lock(&self.device).read_config(offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        lock(&self.device).write_config(offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> std::result::Result<(), DeviceError> {
        tracing::info!(vm = %self.vm_id, "guest vsock driver up");
        lock(&self.device).activate(ctx)
    }

    fn reset(&mut self) {
        tracing::info!(vm = %self.vm_id, "guest reset the vsock device");
        lock(&self.device).reset();
    }

    fn queue_notify(&mut self, queue: u16) -> std::result::Result<(), DeviceError> {
        lock(&self.device).queue_notify(queue)
    }
}
