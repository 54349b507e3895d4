//! A time limit on the vhost-user round trips of one session.
//!
//! A socket time limit (`SO_RCVTIMEO`) does not help here: the vhost
//! crate's frontend takes the `EAGAIN` of a receive that timed out for a
//! signal and receives again, forever. So the watchdog ends an overrunning
//! round trip from outside: it shuts the socket down, the waiting receive
//! sees end-of-file and the call fails. The session is dead from then on,
//! which is the truth about a daemon that stopped answering: the device
//! reports DEVICE_NEEDS_RESET and the share has to be added again.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Name of the thread.
pub const THREAD_NAME: &str = "virtio-fs-watch";

#[derive(Default)]
struct WatchState {
    /// What runs and since when.
    armed: Option<(&'static str, Instant)>,
    fired: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<WatchState>,
    changed: Condvar,
    fd: RawFd,
    limit: Duration,
}

/// Watches the round trips on one socket. Stop it (drop) before the socket
/// is closed.
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A round trip under watch; dropping it ends the watch.
#[must_use = "the watch ends when this is dropped"]
pub struct Armed<'a> {
    shared: &'a Shared,
}

impl Watchdog {
    /// Starts watching socket `fd` with `limit` per round trip.
    pub fn start(fd: RawFd, limit: Duration) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(WatchState::default()),
            changed: Condvar::new(),
            fd,
            limit,
        });
        let watched = shared.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || watch(&watched))?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// Watches the round trip `what` until the returned guard is dropped.
    pub fn arm(&self, what: &'static str) -> Armed<'_> {
        self.shared.state.lock().armed = Some((what, Instant::now()));
        self.shared.changed.notify_all();
        Armed {
            shared: &self.shared,
        }
    }

    /// Whether a round trip overran and the socket was shut down.
    pub fn fired(&self) -> bool {
        self.shared.state.lock().fired
    }

    /// The time limit per round trip.
    pub fn limit(&self) -> Duration {
        self.shared.limit
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.shared.state.lock().armed = None;
        self.shared.changed.notify_all();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the virtio-fs watchdog panicked");
        }
    }
}

fn watch(shared: &Shared) {
    let mut state = shared.state.lock();
    loop {
        if state.stop {
            return;
        }
        let Some((what, since)) = state.armed else {
            shared.changed.wait(&mut state);
            continue;
        };
        let deadline = since + shared.limit;
        if Instant::now() < deadline {
            shared.changed.wait_until(&mut state, deadline);
            continue;
        }
        // SAFETY: shutdown(2) on the session's socket, which stays open
        // until this thread is joined (the watchdog is dropped first).
        let rc = unsafe { libc::shutdown(shared.fd, libc::SHUT_RDWR) };
        tracing::error!(
            what,
            limit = ?shared.limit,
            shut_down = rc == 0,
            "the vhost-user backend did not answer in time; its session is closed"
        );
        state.fired = true;
        state.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn an_overrunning_receive_is_ended_and_a_quick_one_is_not() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let dog = Watchdog::start(ours.as_raw_fd(), Duration::from_millis(100)).unwrap();
        {
            let _quick = dog.arm("quick");
        }
        std::thread::sleep(Duration::from_millis(150));
        assert!(!dog.fired(), "a finished round trip was cut");
        let start = Instant::now();
        let armed = dog.arm("hung");
        let mut buf = [0u8; 4];
        // The peer never answers: the read ends with end-of-file.
        let n = ours.read(&mut buf).unwrap();
        drop(armed);
        assert_eq!(n, 0);
        assert!(dog.fired());
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(theirs);
    }
}
