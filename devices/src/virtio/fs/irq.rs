//! The interrupt thread of an activated device: it waits on the call
//! eventfds the backend signals used buffers on and raises the queue's
//! interrupt, and it watches the vhost-user socket for a hang-up (the
//! backend exited), which marks the device as needing a reset.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::FsError;
use crate::virtio::VirtioInterrupt;

/// Name of the thread.
pub const THREAD_NAME: &str = "virtio-fs-irq";
/// Epoll token of the exit eventfd.
const EXIT: u64 = u64::MAX;
/// Epoll token of the vhost-user socket.
const SOCKET: u64 = u64::MAX - 1;

/// A running interrupt thread; dropping it stops and joins the thread.
pub struct IrqThread {
    exit: EventFd,
    disconnected: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl IrqThread {
    /// Starts the thread for `calls` (queue index, call eventfd), watching
    /// `socket` for a hang-up. `socket` must stay open until the thread is
    /// stopped.
    pub fn spawn(
        calls: Vec<(u16, EventFd)>,
        socket: RawFd,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<Self, FsError> {
        let exit = new_eventfd("the exit eventfd")?;
        let epoll = Epoll::new().map_err(fd_error("an epoll instance"))?;
        let add = |fd: RawFd, events: EventSet, token: u64| {
            epoll
                .ctl(ControlOperation::Add, fd, EpollEvent::new(events, token))
                .map_err(fd_error("an epoll registration"))
        };
        add(exit.as_raw_fd(), EventSet::IN, EXIT)?;
        // Only the hang-up: replies on the socket belong to the frontend.
        add(socket, EventSet::READ_HANG_UP, SOCKET)?;
        for (queue, call) in &calls {
            add(call.as_raw_fd(), EventSet::IN, u64::from(*queue))?;
        }
        let disconnected = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            epoll,
            calls,
            socket,
            interrupt,
            disconnected: disconnected.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || worker.run())
            .map_err(FsError::Thread)?;
        Ok(IrqThread {
            exit,
            disconnected,
            handle: Some(handle),
        })
    }

    /// Whether the thread saw the backend hang up.
    pub fn disconnected(&self) -> bool {
        self.disconnected.load(Ordering::SeqCst)
    }
}

impl Drop for IrqThread {
    fn drop(&mut self) {
        if let Err(error) = self.exit.write(1) {
            tracing::error!(%error, "cannot stop the virtio-fs interrupt thread");
            // Joining would hang; the thread ends with the process.
            return;
        }
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("the virtio-fs interrupt thread panicked");
        }
    }
}

/// What the thread owns.
struct Worker {
    epoll: Epoll,
    calls: Vec<(u16, EventFd)>,
    socket: RawFd,
    interrupt: Arc<dyn VirtioInterrupt>,
    disconnected: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) {
        let mut events = [EpollEvent::default(); 16];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::error!(%error, "virtio-fs interrupt thread cannot wait");
                    self.interrupt
                        .set_needs_reset(&format!("virtio-fs: interrupt thread failed: {error}"));
                    return;
                }
            };
            for event in events.iter().take(n) {
                match event.data() {
                    EXIT => return,
                    SOCKET => self.hang_up(),
                    token => self.call(token),
                }
            }
        }
    }

    /// The backend closed its end: report it once and stop watching.
    fn hang_up(&self) {
        if self.disconnected.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!("vhost-user backend of a virtio-fs device disconnected");
        self.interrupt
            .set_needs_reset("virtio-fs: vhost-user backend disconnected");
        if let Err(error) =
            self.epoll
                .ctl(ControlOperation::Delete, self.socket, EpollEvent::default())
        {
            tracing::warn!(%error, "cannot stop watching the vhost-user socket");
        }
    }

    /// The backend used buffers of queue `token`.
    fn call(&self, token: u64) {
        let Some((queue, fd)) = self.calls.iter().find(|(q, _)| u64::from(*q) == token) else {
            tracing::warn!(token, "event for an unknown virtio-fs call eventfd");
            return;
        };
        match fd.read() {
            Ok(_) => self.interrupt.signal_queue(*queue),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => tracing::warn!(queue, %error, "cannot read a virtio-fs call eventfd"),
        }
    }
}

/// A non-blocking eventfd.
pub fn new_eventfd(what: &'static str) -> Result<EventFd, FsError> {
    EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(fd_error(what))
}

/// Maps an OS error to [`FsError::Fd`] for `what`.
fn fd_error(what: &'static str) -> impl FnOnce(io::Error) -> FsError {
    move |source| FsError::Fd { what, source }
}
