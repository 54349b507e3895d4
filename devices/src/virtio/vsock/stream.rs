//! Host-side streams and listeners.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc};

use super::connection::{ConnShared, TO_GUEST_CAP};

/// One connection as the host sees it: tokio `AsyncRead` + `AsyncWrite`
/// (so it satisfies `uvm_api::VsockIo`). `shutdown()` half-closes (the
/// guest reads EOF); dropping it closes the connection.
pub struct HostStream {
    shared: Arc<ConnShared>,
    notify: Arc<Notify>,
    local_port: u32,
    peer_port: u32,
}

impl HostStream {
    pub(crate) fn new(
        shared: Arc<ConnShared>,
        notify: Arc<Notify>,
        local_port: u32,
        peer_port: u32,
    ) -> Self {
        HostStream {
            shared,
            notify,
            local_port,
            peer_port,
        }
    }

    /// The host-side port.
    pub fn local_port(&self) -> u32 {
        self.local_port
    }

    /// The guest-side port.
    pub fn peer_port(&self) -> u32 {
        self.peer_port
    }

    /// Resets the connection instead of closing it gracefully (used for
    /// connections a dropped listener never handed out).
    pub(crate) fn abort(self) {
        self.shared.lock().abort = true;
        // Drop marks it closed and wakes the muxer.
    }
}

impl AsyncRead for HostStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut io = self.shared.lock();
        if !io.from_guest.is_empty() {
            let n = io.from_guest.len().min(buf.remaining());
            let (a, b) = io.from_guest.as_slices();
            let from_a = n.min(a.len());
            buf.put_slice(&a[..from_a]);
            buf.put_slice(&b[..n - from_a]);
            io.from_guest.drain(..n);
            io.consume(n);
            drop(io);
            // Credit may need announcing.
            self.notify.notify_one();
            return Poll::Ready(Ok(()));
        }
        if io.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if io.peer_eof {
            return Poll::Ready(Ok(()));
        }
        io.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for HostStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.shared.lock();
        if io.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if io.peer_no_recv || io.host_shut_write {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let space = TO_GUEST_CAP.saturating_sub(io.to_guest.len());
        if space == 0 {
            io.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = space.min(buf.len());
        io.to_guest.extend(&buf[..n]);
        drop(io);
        self.notify.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Data is queued for the guest as soon as it is written.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.lock().host_shut_write = true;
        self.notify.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for HostStream {
    fn drop(&mut self) {
        self.shared.lock().host_closed = true;
        self.notify.notify_one();
    }
}

/// A host connect in flight: resolves when the guest answers REQUEST.
pub struct Connect {
    stream: Option<HostStream>,
}

impl Connect {
    pub(crate) fn new(stream: HostStream) -> Self {
        Connect {
            stream: Some(stream),
        }
    }
}

impl Future for Connect {
    type Output = io::Result<HostStream>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(stream) = self.stream.as_ref() else {
            return Poll::Ready(Err(io::Error::other("connect polled after completion")));
        };
        let mut io = stream.shared.lock();
        if io.reset {
            drop(io);
            self.stream = None;
            return Poll::Ready(Err(io::ErrorKind::ConnectionRefused.into()));
        }
        if io.established {
            drop(io);
            return match self.stream.take() {
                Some(s) => Poll::Ready(Ok(s)),
                None => Poll::Ready(Err(io::Error::other("connect polled after completion"))),
            };
        }
        io.connect_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A host listener: guest connections to its port arrive through
/// [`HostListener::accept`]. Dropping it frees the port and resets
/// connections it has not handed out.
pub struct HostListener {
    port: u32,
    rx: mpsc::Receiver<HostStream>,
    /// Frees the port in the muxer.
    unlisten: Option<Box<dyn FnOnce() + Send>>,
}

impl HostListener {
    pub(crate) fn new(
        port: u32,
        rx: mpsc::Receiver<HostStream>,
        unlisten: Box<dyn FnOnce() + Send>,
    ) -> Self {
        HostListener {
            port,
            rx,
            unlisten: Some(unlisten),
        }
    }

    /// The port listened on.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The next guest connection; fails once the device is gone.
    pub async fn accept(&mut self) -> io::Result<HostStream> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "vsock device is gone"))
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        if let Some(unlisten) = self.unlisten.take() {
            unlisten();
        }
        self.rx.close();
        while let Ok(stream) = self.rx.try_recv() {
            stream.abort();
        }
    }
}
