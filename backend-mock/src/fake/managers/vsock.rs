//! Host/guest sockets: host listeners the simulated guest dials, and guest
//! echo listeners the host connects to. Connections are in-memory duplex pipes.

use std::io;
use std::sync::Weak;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tracing::debug;
use uvm_api::{
    Action, Error, Operation, Resource, Result, State, VmSocketManager, VsockListener, VsockStream,
    validate_port,
};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;
use crate::fake::state::vsock::HostPort;

/// Connections a host listener queues before refusing more.
const BACKLOG: usize = 1024;
/// Bytes buffered in each direction of a connection.
const PIPE_BYTES: usize = 256 * 1024;

fn refused(port: u32, why: &str) -> Error {
    Error::io(
        format!("connecting to vsock port {port}"),
        io::Error::new(io::ErrorKind::ConnectionRefused, why.to_owned()),
    )
}

fn stopped(operation: &str) -> Error {
    Error::InvalidState {
        operation: operation.to_owned(),
        state: State::Stopped,
    }
}

/// Resolves once the VM has stopped (or is gone).
async fn until_stopped(mut state: watch::Receiver<State>) {
    let _gone = state.wait_for(|s| *s == State::Stopped).await;
}

/// A host listener of a fake VM. Dropping it frees the port.
pub(crate) struct FakeListener {
    port: u32,
    serial: u64,
    rx: mpsc::Receiver<VsockStream>,
    vm: Weak<Core>,
    state: watch::Receiver<State>,
}

#[async_trait]
impl VsockListener for FakeListener {
    fn port(&self) -> u32 {
        self.port
    }

    async fn accept(&mut self) -> Result<VsockStream> {
        if *self.state.borrow() == State::Stopped {
            return Err(stopped("accept"));
        }
        // The VM drops every sender when it stops, which ends the wait.
        self.rx.recv().await.ok_or_else(|| stopped("accept"))
    }
}

impl Drop for FakeListener {
    fn drop(&mut self) {
        if let Some(vm) = self.vm.upgrade() {
            let mut m = vm.lock();
            if m.vsock.host.get(&self.port).map(|p| p.serial) == Some(self.serial) {
                m.vsock.host.remove(&self.port);
                debug!(vm = %vm.id, port = self.port, "vsock listener closed");
            }
        }
    }
}

/// Echoes everything read back until end of stream, then half-closes.
async fn echo(mut io: DuplexStream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return io.shutdown().await;
        }
        io.write_all(&buf[..n]).await?;
    }
}

impl Core {
    pub(crate) fn vsock_listen(&self, port: u32) -> Result<FakeListener> {
        self.require(Resource::VmSocket, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::Listen)?;
        validate_port(port)?;
        if m.vsock.host.contains_key(&port) {
            return Err(Error::already_exists(Resource::VmSocket, port.to_string()));
        }
        self.faults.take(FaultPoint::Listen)?;
        let serial = m.serial();
        let (tx, rx) = mpsc::channel(BACKLOG);
        m.vsock.host.insert(port, HostPort { serial, tx });
        debug!(port, "vsock listening");
        Ok(FakeListener {
            port,
            serial,
            rx,
            vm: self.weak(),
            state: self.watch_state(),
        })
    }

    pub(crate) fn vsock_connect(&self, port: u32) -> Result<VsockStream> {
        self.require(Resource::VmSocket, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::Connect)?;
        validate_port(port)?;
        self.faults.take(FaultPoint::Connect)?;
        if !m.vsock.guest_echo.contains(&port) {
            return Err(refused(port, "no guest listener on this port"));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(Error::backend)?;
        let (host, guest) = tokio::io::duplex(PIPE_BYTES);
        let stop = until_stopped(self.watch_state());
        runtime.spawn(async move {
            tokio::select! {
                result = echo(guest) => if let Err(e) = result {
                    debug!(port, error = %e, "guest echo connection ended");
                },
                () = stop => {}
            }
        });
        m.count("vsock_connections");
        debug!(port, "vsock connected to guest");
        Ok(Box::new(host))
    }

    /// The guest dials host port `port`, sends `payload`, half-closes and
    /// reads the reply to its end. The caller checked the guest runs.
    pub(crate) async fn guest_dial(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        let guest = {
            let mut m = self.lock();
            self.require(Resource::VmSocket, Operation::Add)?;
            validate_port(port)?;
            let Some(listener) = m.vsock.host.get(&port) else {
                return Err(refused(port, "no host listener on this port"));
            };
            let (host, guest) = tokio::io::duplex(PIPE_BYTES);
            match listener.tx.try_send(Box::new(host)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(refused(port, "the host listener's backlog is full"));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(refused(port, "the host listener is closing"));
                }
            }
            m.count("vsock_connections");
            guest
        };
        debug!(port, bytes = payload.len(), "guest dialled the host");
        let (mut reader, mut writer) = tokio::io::split(guest);
        let exchange = async {
            let send = async {
                writer.write_all(payload).await?;
                writer.shutdown().await
            };
            let mut reply = Vec::new();
            let receive = reader.read_to_end(&mut reply);
            let (sent, received) = tokio::join!(send, receive);
            // A host that closes without reading everything is not an error of the guest.
            if let Err(e) = sent
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                return Err(e);
            }
            received.map(|_| reply)
        };
        tokio::select! {
            result = exchange => result.map_err(|e| Error::io(format!("guest connection to host port {port}"), e)),
            () = until_stopped(self.watch_state()) => Err(stopped("dial_host")),
        }
    }

    /// The guest starts echoing on `port`. The caller checked the guest runs.
    pub(crate) fn guest_serve_echo(&self, port: u32) -> Result<()> {
        self.require(Resource::VmSocket, Operation::Add)?;
        let mut m = self.lock();
        validate_port(port)?;
        if !m.vsock.guest_echo.insert(port) {
            return Err(Error::already_exists(Resource::VmSocket, port.to_string()));
        }
        debug!(port, "guest echo listener started");
        Ok(())
    }
}

#[async_trait]
impl VmSocketManager for Core {
    async fn listen(&self, port: u32) -> Result<Box<dyn VsockListener>> {
        self.traced("vsock listen", async {
            let listener: Box<dyn VsockListener> = Box::new(self.vsock_listen(port)?);
            Ok(listener)
        })
        .await
    }

    async fn connect(&self, port: u32) -> Result<VsockStream> {
        self.traced("vsock connect", async { self.vsock_connect(port) })
            .await
    }
}
