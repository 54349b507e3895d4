//! The receive pump of a virtio-net device whose backend has a file
//! descriptor (a tap): one thread waits until the backend is readable and
//! moves what waits there into the guest's receive buffers.
//!
//! When a pass stops on [`RxStatus::NoBuffers`] or [`RxStatus::Inactive`]
//! (the guest posted no buffer, the driver is not running, the device is
//! broken or paused), the pump looks again after [`NO_BUFFER_BACKOFF`]: the
//! backend may still be readable, and frames wait there meanwhile. Dropping
//! the pump stops and joins the thread.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

/// How long the pump waits before trying again when a pass could not
/// deliver (it also wakes when a frame arrives).
pub const NO_BUFFER_BACKOFF: Duration = Duration::from_millis(5);

/// What a receive pass stopped on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStatus {
    /// The backend has no more frames.
    Drained,
    /// Frames may be waiting but the guest posted no receive buffer; the
    /// device pulls them itself when the guest posts some.
    NoBuffers,
    /// The driver is not running, the device is broken or paused; frames
    /// stay in the backend.
    Inactive,
}

/// The thread moving frames from a backend's fd into the guest.
pub struct RxPump {
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Waits up to `timeout_ms` (-1: forever) for `backend` or `stop` to be
/// readable; returns (backend readable, stop readable).
fn poll_two(backend: RawFd, stop: RawFd, timeout_ms: i32) -> std::io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: backend,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd structs for the call's
    // duration; both descriptors stay open while the pump runs (the backend
    // is owned by the device state the pass closure keeps alive, the
    // eventfd by the pump).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(e);
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
}

impl RxPump {
    /// Starts a thread named after `name` that runs `pass` whenever `fd`
    /// is readable (and every [`NO_BUFFER_BACKOFF`] while a pass could not
    /// deliver). `fd` must stay open for as long as `pass` lives.
    pub fn start(
        name: &str,
        fd: RawFd,
        mut pass: impl FnMut() -> RxStatus + Send + 'static,
    ) -> std::io::Result<RxPump> {
        let stop = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let stopping = Arc::new(AtomicBool::new(false));
        let (stop2, stopping2) = (stop.clone(), stopping.clone());
        let nic = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("net-rx-{name}"))
            .spawn(move || {
                let stop_fd = stop2.as_raw_fd();
                let mut timeout = -1;
                while !stopping2.load(Ordering::Acquire) {
                    match poll_two(fd, stop_fd, timeout) {
                        Ok((_, true)) => break,
                        Ok((readable, false)) => {
                            if readable || timeout >= 0 {
                                timeout = match pass() {
                                    RxStatus::Drained => -1,
                                    RxStatus::NoBuffers | RxStatus::Inactive => {
                                        NO_BUFFER_BACKOFF.as_millis() as i32
                                    }
                                };
                            }
                        }
                        Err(e) => {
                            tracing::error!(nic = %nic, "polling the backend failed: {e}; receive stops");
                            break;
                        }
                    }
                }
            })?;
        Ok(RxPump {
            stop,
            stopping,
            thread: Some(thread),
        })
    }
}

impl Drop for RxPump {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.stop.write(1) {
            tracing::error!("waking the rx pump to stop it: {e}");
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the rx pump thread panicked");
        }
    }
}
