//! The lifecycle state and exit status of one VM, shared by the async API
//! and the VMM's control thread. The first exit wins; `Stopped` is terminal.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use uvm_api::{ExitStatus, State};

#[derive(Debug, Default)]
struct Times {
    started: Option<Instant>,
    stopped: Option<Instant>,
}

/// State, exit status (watchable by any number of waiters) and run times.
#[derive(Debug)]
pub struct Lifecycle {
    state: Mutex<State>,
    exit: watch::Sender<Option<ExitStatus>>,
    times: Mutex<Times>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            state: Mutex::new(State::Created),
            exit: watch::Sender::new(None),
            times: Mutex::new(Times::default()),
        }
    }
}

impl Lifecycle {
    /// The current state.
    pub fn state(&self) -> State {
        *self.state.lock()
    }

    /// Moves to `next` unless the VM has stopped meanwhile; returns whether it moved.
    pub fn set_unless_stopped(&self, next: State) -> bool {
        let mut s = self.state.lock();
        if *s == State::Stopped {
            return false;
        }
        *s = next;
        if next == State::Running {
            let mut t = self.times.lock();
            t.started.get_or_insert_with(Instant::now);
        }
        true
    }

    /// Records the exit (the first one wins); returns whether this call stopped the VM.
    pub fn finish(&self, status: ExitStatus) -> bool {
        let mut s = self.state.lock();
        if *s == State::Stopped {
            return false;
        }
        *s = State::Stopped;
        self.times.lock().stopped = Some(Instant::now());
        self.exit.send_replace(Some(status));
        true
    }

    /// The exit status, if stopped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.borrow().clone()
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(status) = rx.borrow_and_update().clone() {
                return status;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`; this cannot happen while we borrow it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Time since start, frozen at the stop; zero before start.
    pub fn uptime(&self) -> Duration {
        let t = self.times.lock();
        match (t.started, t.stopped) {
            (Some(start), Some(stop)) => stop.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            _ => Duration::ZERO,
        }
    }
}
