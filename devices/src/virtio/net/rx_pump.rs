//! The receive pump of a virtio-net device whose backend has a file
//! descriptor (a tap): one thread waits until the backend is readable and
//! moves what waits there into the guest's receive buffers.
//!
//! # Parking
//!
//! When a pass stops on [`RxStatus::NoBuffers`] or [`RxStatus::Inactive`]
//! (the guest posted no buffer, the driver is not running, the device is
//! broken or paused), frames stay in the backend and the backend stays
//! readable: watching it would make the pump spin. So the pump *parks*: it
//! stops watching the backend and waits only for its [`RxWaker`] (and, as a
//! safety net, looks again every [`PARKED_RECHECK`]). Whatever learns that
//! the guest posted buffers wakes it; with the production wiring that is
//! the backend itself: wrapped in [`super::backend::WakeOnRecv`], every
//! receive the device makes outside the pump (on a guest rx notification,
//! or at resume, which only happen with buffers posted) wakes a parked
//! pump, which then runs a pass and watches the backend again once it has
//! drained it.
//!
//! Dropping the pump stops and joins the thread. The thread runs under
//! [`crate::thread_guard`]: a panic in a pass is logged and ends receive
//! for this NIC (the VMM has no failure path from here yet).

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use crate::thread_guard::spawn_guarded;

/// How often a parked pump looks again without being woken.
pub const PARKED_RECHECK: Duration = Duration::from_millis(100);

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

thread_local! {
    /// Whether this thread is a receive pump (its own receives wake nothing).
    static ON_PUMP: Cell<bool> = const { Cell::new(false) };
}

#[derive(Debug)]
struct WakerInner {
    fd: EventFd,
    /// Whether the pump watches the backend (then a wake-up is not needed).
    watching: AtomicBool,
    /// Whether a wake-up is written and not yet read by the pump.
    pending: AtomicBool,
}

/// Wakes a parked [`RxPump`] (see the module docs). Cheap to clone; a
/// wake-up while the pump watches the backend, or from the pump's own
/// thread, does nothing, and repeated wake-ups before the pump runs cost
/// one eventfd write.
#[derive(Debug, Clone)]
pub struct RxWaker {
    inner: Arc<WakerInner>,
}

impl RxWaker {
    /// A waker for a pump not started yet.
    pub fn new() -> std::io::Result<Self> {
        Ok(RxWaker {
            inner: Arc::new(WakerInner {
                fd: EventFd::new(libc::EFD_NONBLOCK)?,
                watching: AtomicBool::new(true),
                pending: AtomicBool::new(false),
            }),
        })
    }

    /// Tells the pump that the guest may have posted receive buffers.
    pub fn wake(&self) {
        let inner = &self.inner;
        if ON_PUMP.get()
            || inner.watching.load(Ordering::Acquire)
            || inner.pending.swap(true, Ordering::AcqRel)
        {
            return;
        }
        if let Err(e) = inner.fd.write(1) {
            inner.pending.store(false, Ordering::Release);
            tracing::error!("waking the rx pump: {e}");
        }
    }

    /// The pump: takes a written wake-up.
    fn take(&self) {
        self.inner.pending.store(false, Ordering::Release);
        let _ = self.inner.fd.read();
    }

    fn set_watching(&self, watching: bool) {
        self.inner.watching.store(watching, Ordering::Release);
    }
}

/// The thread moving frames from a backend's fd into the guest.
pub struct RxPump {
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    waker: RxWaker,
    thread: Option<JoinHandle<Option<()>>>,
}

/// What a wait saw readable.
#[derive(Debug, Default)]
struct Ready {
    backend: bool,
    stop: bool,
    wake: bool,
}

/// Waits up to `timeout_ms` (-1: forever) for `backend` (not watched if
/// negative), `stop` or `wake` to be readable.
fn wait(backend: RawFd, stop: RawFd, wake: RawFd, timeout_ms: i32) -> std::io::Result<Ready> {
    let pollfd = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = [pollfd(backend), pollfd(stop), pollfd(wake)];
    // SAFETY: `fds` is a valid array of three pollfd structs for the call's
    // duration (poll skips a negative fd); the descriptors stay open while
    // the pump runs (the backend is owned by the device state the pass
    // closure keeps alive, the eventfds by the pump and its waker).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(Ready::default());
        }
        return Err(e);
    }
    Ok(Ready {
        backend: fds[0].revents != 0,
        stop: fds[1].revents != 0,
        wake: fds[2].revents != 0,
    })
}

/// The pump thread's loop (see the module docs).
fn pump_loop(
    nic: &str,
    fd: RawFd,
    stop: &EventFd,
    stopping: &AtomicBool,
    waker: &RxWaker,
    pass: &mut dyn FnMut() -> RxStatus,
) {
    ON_PUMP.set(true);
    let recheck = PARKED_RECHECK.as_millis() as i32;
    let mut watching = true;
    waker.set_watching(true);
    while !stopping.load(Ordering::Acquire) {
        let (backend, timeout) = if watching { (fd, -1) } else { (-1, recheck) };
        let ready = match wait(
            backend,
            stop.as_raw_fd(),
            waker.inner.fd.as_raw_fd(),
            timeout,
        ) {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!(nic = %nic, "polling the backend failed: {e}; receive stops");
                break;
            }
        };
        if ready.stop {
            break;
        }
        if ready.wake {
            waker.take();
        }
        if ready.backend || ready.wake || !watching {
            // Not watching during the pass: a receive elsewhere meanwhile
            // wakes the pump again, so no posted buffer is missed.
            waker.set_watching(false);
            watching = pass() == RxStatus::Drained;
            waker.set_watching(watching);
        }
    }
}

impl RxPump {
    /// Starts a thread named after `name` that runs `pass` whenever `fd`
    /// is readable, parking while a pass could not deliver (see the module
    /// docs). `fd` must stay open for as long as `pass` lives.
    pub fn start(
        name: &str,
        fd: RawFd,
        pass: impl FnMut() -> RxStatus + Send + 'static,
    ) -> std::io::Result<RxPump> {
        RxPump::start_with_waker(name, fd, RxWaker::new()?, pass)
    }

    /// [`RxPump::start`], woken from parking through `waker`.
    pub fn start_with_waker(
        name: &str,
        fd: RawFd,
        waker: RxWaker,
        mut pass: impl FnMut() -> RxStatus + Send + 'static,
    ) -> std::io::Result<RxPump> {
        let stop = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let stopping = Arc::new(AtomicBool::new(false));
        let (stop2, stopping2, waker2) = (stop.clone(), stopping.clone(), waker.clone());
        let nic = name.to_owned();
        // A panic of the pass (a device bug) is caught and logged by the
        // guard; receive stops for this NIC only.
        let thread = spawn_guarded(
            format!("net-rx-{name}"),
            move || pump_loop(&nic, fd, &stop2, &stopping2, &waker2, &mut pass),
            |_| {},
        )?;
        Ok(RxPump {
            stop,
            stopping,
            waker,
            thread: Some(thread),
        })
    }

    /// The pump's waker.
    pub fn waker(&self) -> RxWaker {
        self.waker.clone()
    }
}

impl Drop for RxPump {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.stop.write(1) {
            tracing::error!("waking the rx pump to stop it: {e}");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A readable fd the pump never drains (as a tap with frames waiting).
    fn readable() -> EventFd {
        let fd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        fd.write(1).unwrap();
        fd
    }

    #[test]
    fn a_pump_without_buffers_does_not_spin_on_a_readable_backend() {
        for status in [RxStatus::NoBuffers, RxStatus::Inactive] {
            let fd = readable();
            let passes = Arc::new(AtomicUsize::new(0));
            let p = passes.clone();
            let pump = RxPump::start("t", fd.as_raw_fd(), move || {
                p.fetch_add(1, Ordering::Relaxed);
                status
            })
            .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(pump);
            let n = passes.load(Ordering::Relaxed);
            assert!(n <= 10, "{n} passes in 200 ms with {status:?}");
        }
    }

    #[test]
    fn a_wake_runs_a_pass_and_the_pump_watches_again_after_draining() {
        let fd = readable();
        let raw = fd.as_raw_fd();
        let passes = Arc::new(AtomicUsize::new(0));
        let buffers = Arc::new(AtomicBool::new(false));
        let (p, b) = (passes.clone(), buffers.clone());
        let pump = RxPump::start("t", raw, move || {
            p.fetch_add(1, Ordering::Relaxed);
            if b.load(Ordering::Relaxed) {
                let _ = fd.read();
                RxStatus::Drained
            } else {
                RxStatus::NoBuffers
            }
        })
        .unwrap();
        let wait_for = |n: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while passes.load(Ordering::Relaxed) < n {
                assert!(std::time::Instant::now() < deadline, "no pass {n}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        wait_for(1);
        // Parked: the guest posts buffers, and a receive elsewhere wakes the pump.
        buffers.store(true, Ordering::Relaxed);
        let before = passes.load(Ordering::Relaxed);
        pump.waker().wake();
        wait_for(before + 1);
        // Drained: watching the (now quiet) backend, a new frame runs a pass.
        std::thread::sleep(Duration::from_millis(20));
        let before = passes.load(Ordering::Relaxed);
        // SAFETY: `raw` is the eventfd the pass closure owns, open while the pump runs.
        let written = unsafe { libc::write(raw, 1u64.to_ne_bytes().as_ptr().cast(), 8) };
        assert_eq!(written, 8);
        wait_for(before + 1);
        drop(pump);
    }
}
