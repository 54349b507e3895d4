//! The guest agent's client for a QEMU guest: an `AF_VSOCK` connection
//! (vhost-vsock, so a real socket of this host) made non-blocking and
//! driven by tokio's reactor, as the [`AgentClient`]'s byte stream.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use uvm_guest_agent::client::AgentClient;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected, non-blocking vsock stream.
#[derive(Debug)]
pub struct VsockConn {
    fd: AsyncFd<File>,
}

fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor `file` owns and keeps open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on the same open descriptor, adding O_NONBLOCK to its flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl VsockConn {
    /// Connects to `cid:port` (blocking for at most `timeout`).
    pub fn connect(cid: u32, port: u32, timeout: Duration) -> io::Result<Self> {
        Self::from_file(uvm_guest_agent::vsock::connect(cid, port, timeout)?)
    }

    /// Wraps a connected vsock socket (such as one a listener accepted).
    pub fn from_file(file: File) -> io::Result<Self> {
        set_nonblocking(&file)?;
        // SAFETY: `file` owns an open socket descriptor; the `AsyncFd` takes
        // `file` by value and nothing else closes or replaces the descriptor
        // while it is registered (a `File` always reports the same one).
        let fd = unsafe { AsyncFd::register(file)? };
        Ok(VsockConn { fd })
    }
}

impl AsyncRead for VsockConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| {
                let mut file: &File = inner.get_ref();
                file.read(unfilled)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for VsockConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|inner| {
                let mut file: &File = inner.get_ref();
                file.write(data)
            }) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(uvm_guest_agent::vsock::shutdown_write(self.fd.get_ref()))
    }
}

/// An agent client for the guest with vsock CID `cid`, agent on `port`.
pub fn agent_client(cid: u32, port: u32) -> AgentClient {
    AgentClient::new(move || async move {
        VsockConn::connect(cid, port, CONNECT_TIMEOUT)
            .map(|c| Box::new(c) as uvm_api::VsockStream)
            .map_err(|e| uvm_api::Error::io(format!("connect to vsock {cid}:{port}"), e))
    })
}
