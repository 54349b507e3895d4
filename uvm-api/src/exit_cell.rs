//! [`ExitCell`]: a VM's lifecycle state and exit status, written once for
//! every backend.
//!
//! The contract (DESIGN.md section 1) asks of every backend: `wait` returns
//! the [`ExitStatus`] to any number of waiters at any time, the first exit
//! wins (a guest power-off racing a forced stop reports whichever came
//! first, and never changes afterwards), `Stopped` is terminal, and
//! `exit_status` is `Some` whenever `state` reads `Stopped`. The cell keeps
//! those rules in one place: backends move the state with
//! [`ExitCell::set_unless_stopped`] and end the VM with
//! [`ExitCell::finish`] or [`ExitCell::finish_if`], which publishes the
//! status before the state reads `Stopped`.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::exit::{ExitStatus, StopReason};
use crate::state::State;

/// The state and when the guest first ran and stopped.
#[derive(Debug)]
struct Inner {
    state: State,
    started: Option<Instant>,
    stopped: Option<Instant>,
}

/// The lifecycle state of one VM, its exit status (watched by any number
/// of waiters) and its uptime.
///
/// Starts `Created`. Uses `tokio::time::Instant`, so tests with paused
/// tokio time control the uptime.
#[derive(Debug)]
pub struct ExitCell {
    inner: Mutex<Inner>,
    state: watch::Sender<State>,
    exit: watch::Sender<Option<ExitStatus>>,
}

impl Default for ExitCell {
    fn default() -> Self {
        ExitCell {
            inner: Mutex::new(Inner {
                state: State::Created,
                started: None,
                stopped: None,
            }),
            state: watch::Sender::new(State::Created),
            exit: watch::Sender::new(None),
        }
    }
}

impl ExitCell {
    /// A cell in state `Created`.
    pub fn new() -> Self {
        ExitCell::default()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Moves to `next` unless the VM has stopped; returns whether it moved.
    ///
    /// The first move to `Running` starts the uptime. Moving to `Stopped`
    /// this way is refused (returns false): only [`ExitCell::finish`] and
    /// [`ExitCell::finish_if`] stop a VM, since a stop needs a status.
    pub fn set_unless_stopped(&self, next: State) -> bool {
        let mut inner = self.inner.lock();
        if inner.state.is_stopped() || next.is_stopped() {
            return false;
        }
        inner.state = next;
        if next == State::Running {
            inner.started.get_or_insert_with(Instant::now);
        }
        self.state.send_replace(next);
        true
    }

    /// Stops the VM with `status` unless it has stopped already (the first
    /// exit wins); returns whether this call stopped it.
    pub fn finish(&self, status: ExitStatus) -> bool {
        self.finish_if(status, |_| Some(())).is_some()
    }

    /// Stops the VM with `status` if it has not stopped and `decide`, given
    /// the state it is leaving, returns `Some`; returns what `decide` returned.
    ///
    /// `decide` runs under the cell's lock, before anyone can see the VM
    /// stopped: a backend refuses there the exits its state does not allow
    /// (only a running guest can power itself off) and does its own
    /// bookkeeping of the exit atomically with it. It must not call back
    /// into the cell. The status is published before the state reads
    /// `Stopped`, so whoever sees `Stopped` also sees why.
    pub fn finish_if<R>(
        &self,
        status: ExitStatus,
        decide: impl FnOnce(State) -> Option<R>,
    ) -> Option<R> {
        let mut inner = self.inner.lock();
        if inner.state.is_stopped() {
            return None;
        }
        let outcome = decide(inner.state)?;
        if inner.started.is_some() {
            inner.stopped = Some(Instant::now());
        }
        self.exit.send_replace(Some(status));
        inner.state = State::Stopped;
        self.state.send_replace(State::Stopped);
        Some(outcome)
    }

    /// The exit status, once stopped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.borrow().clone()
    }

    /// Waits for the exit and returns its status (at once if stopped).
    pub async fn wait(&self) -> ExitStatus {
        let mut exit = self.exit.subscribe();
        let status = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|s| s.clone());
        // The sender lives in `self`, which this call borrows: the wait
        // cannot end without a status, but say so rather than panic.
        status.unwrap_or_else(|| ExitStatus::with_detail(StopReason::Unknown, "the VM went away"))
    }

    /// A receiver that sees every change of state, for tasks that must not
    /// keep the VM alive (it reports closed once the cell is gone).
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// Time since the guest first ran, frozen at the stop; zero before.
    pub fn uptime(&self) -> Duration {
        let inner = self.inner.lock();
        match (inner.started, inner.stopped) {
            (Some(start), Some(stop)) => stop.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            (None, _) => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_first_exit_wins_and_stopped_is_terminal() {
        let cell = ExitCell::new();
        assert!(cell.set_unless_stopped(State::Running));
        assert!(!cell.set_unless_stopped(State::Stopped));
        assert!(cell.finish(ExitStatus::new(StopReason::Shutdown)));
        assert!(!cell.finish(ExitStatus::new(StopReason::Killed)));
        assert!(!cell.set_unless_stopped(State::Running));
        assert_eq!(cell.state(), State::Stopped);
        assert_eq!(
            cell.exit_status().map(|s| s.reason),
            Some(StopReason::Shutdown)
        );
    }

    #[test]
    fn finish_if_refuses_or_runs_its_bookkeeping_once() {
        let cell = ExitCell::new();
        let refused = cell.finish_if(ExitStatus::new(StopReason::GuestPanic), |s| {
            (s == State::Running).then_some("bookkeeping")
        });
        assert_eq!(refused, None);
        assert_eq!((cell.state(), cell.exit_status()), (State::Created, None));
        cell.set_unless_stopped(State::Running);
        let mut seen = None;
        let done = cell.finish_if(ExitStatus::new(StopReason::GuestPanic), |s| {
            seen = Some(s);
            Some(7)
        });
        assert_eq!((done, seen), (Some(7), Some(State::Running)));
        let again = cell.finish_if(ExitStatus::new(StopReason::Killed), |_| -> Option<()> {
            panic!("decide ran on a stopped VM")
        });
        assert_eq!(again, None);
    }

    #[tokio::test]
    async fn whoever_sees_stopped_sees_the_status() {
        let cell = Arc::new(ExitCell::new());
        let mut state = cell.watch_state();
        let watcher = {
            let cell = cell.clone();
            tokio::spawn(async move {
                state.wait_for(|s| s.is_stopped()).await.unwrap();
                cell.exit_status()
            })
        };
        tokio::task::yield_now().await;
        cell.finish(ExitStatus::with_detail(StopReason::Crash, "triple fault"));
        let status = watcher.await.unwrap().unwrap();
        assert_eq!(status.detail.as_deref(), Some("triple fault"));
    }

    #[tokio::test]
    async fn every_waiter_gets_the_status_before_and_after_the_exit() {
        let cell = Arc::new(ExitCell::new());
        let early: Vec<_> = (0..3)
            .map(|_| {
                let cell = cell.clone();
                tokio::spawn(async move { cell.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        cell.finish(ExitStatus::new(StopReason::Reboot));
        for waiter in early {
            assert_eq!(waiter.await.unwrap().reason, StopReason::Reboot);
        }
        assert_eq!(cell.wait().await.reason, StopReason::Reboot);
    }

    #[tokio::test(start_paused = true)]
    async fn uptime_runs_from_the_first_start_and_freezes_at_the_stop() {
        let cell = ExitCell::new();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(cell.uptime(), Duration::ZERO);
        cell.set_unless_stopped(State::Running);
        tokio::time::advance(Duration::from_secs(2)).await;
        cell.set_unless_stopped(State::Paused);
        cell.set_unless_stopped(State::Running);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cell.uptime(), Duration::from_secs(3));
        cell.finish(ExitStatus::new(StopReason::Killed));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(cell.uptime(), Duration::from_secs(3));
    }
}
