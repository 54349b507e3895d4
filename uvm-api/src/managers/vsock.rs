use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

/// The reserved "any port" value of vsock, never a valid port here.
pub const VMADDR_PORT_ANY: u32 = u32::MAX;

/// A byte stream to or from the guest.
pub trait VsockIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> VsockIo for T {}

/// A connected stream. Shutting down the write side half-closes it.
pub type VsockStream = Box<dyn VsockIo>;

/// A host-side listener: guest connections to its port arrive through [`VsockListener::accept`].
///
/// Dropping it frees the port.
#[async_trait]
pub trait VsockListener: Send {
    /// The port listened on.
    fn port(&self) -> u32;

    /// Waits for the next guest connection. Fails with `InvalidState` once the VM has stopped.
    async fn accept(&mut self) -> Result<VsockStream>;
}

/// Host/guest sockets (resource [`crate::Resource::VmSocket`], operation `Add`).
#[async_trait]
pub trait VmSocketManager: Send + Sync {
    /// Listens on `port` for guest connections (allowed before `start`).
    /// `AlreadyExists` if the port has a listener.
    async fn listen(&self, port: u32) -> Result<Box<dyn VsockListener>>;

    /// Connects to a guest listener on `port`. Fails with `Io` (connection refused)
    /// if nothing listens there.
    async fn connect(&self, port: u32) -> Result<VsockStream>;
}

/// Checks a vsock port number.
pub fn validate_port(port: u32) -> Result<()> {
    if port == VMADDR_PORT_ANY {
        return Err(Error::invalid_argument(
            "port",
            "port 4294967295 is VMADDR_PORT_ANY, not a real port",
        ));
    }
    Ok(())
}
