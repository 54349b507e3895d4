//! Notices when the async runtime stops making progress (every worker thread
//! stuck in a call that blocks), prints where each thread is and ends the
//! process, instead of hanging until an outer time limit kills it without a
//! word.
//!
//! A task on the runtime beats once a second; a plain thread watches the
//! beat. A check that merely overruns its limit does not stall the runtime
//! (the runner fails it and goes on), so this fires only when nothing can
//! run any more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

/// Exit code of a run ended by the watchdog.
pub const STALLED_EXIT_CODE: i32 = 3;

/// How often the runtime task beats and the watcher looks.
const BEAT: Duration = Duration::from_secs(1);

/// A running watchdog; [`Watchdog::stop`] ends it.
pub struct Watchdog {
    stopped: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching `runtime`: if it has not run its beat task for
    /// `stall` (plus one beat of slack), the watcher prints the threads and exits the process with
    /// [`STALLED_EXIT_CODE`].
    pub fn start(runtime: &Runtime, stall: Duration) -> std::io::Result<Watchdog> {
        Watchdog::start_with(runtime, stall, report_stall)
    }

    /// Like [`Watchdog::start`], calling `on_stall` with how long the
    /// runtime has been silent instead of ending the process; the watcher
    /// stops after that call.
    fn start_with(
        runtime: &Runtime,
        stall: Duration,
        on_stall: impl FnOnce(Duration) + Send + 'static,
    ) -> std::io::Result<Watchdog> {
        let origin = Instant::now();
        let last_beat = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        {
            let last_beat = last_beat.clone();
            runtime.spawn(async move {
                loop {
                    last_beat.store(millis_since(origin), Ordering::Relaxed);
                    tokio::time::sleep(BEAT).await;
                }
            });
        }
        // One beat of slack: beats land a little more than `BEAT` apart, so
        // a limit near one beat is not crossed by a healthy runtime.
        let limit_ms = u64::try_from(stall.saturating_add(BEAT).as_millis()).unwrap_or(u64::MAX);
        let watcher = {
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name("conformance-watchdog".into())
                .spawn(move || {
                    while !stopped.load(Ordering::Relaxed) {
                        std::thread::sleep(BEAT);
                        let silent =
                            millis_since(origin).saturating_sub(last_beat.load(Ordering::Relaxed));
                        if silent > limit_ms {
                            on_stall(Duration::from_millis(silent));
                            return;
                        }
                    }
                })?
        };
        Ok(Watchdog {
            stopped,
            watcher: Some(watcher),
        })
    }

    /// Stops the watcher and waits for it.
    pub fn stop(mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

fn millis_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Prints what every thread waits on and ends the process.
fn report_stall(silent: Duration) {
    eprintln!(
        "uvm-conformance: the async runtime has not run for {silent:.0?}: every worker thread \
         is blocked (a backend call that blocks instead of awaiting). Threads:\n{}\
         uvm-conformance: ending the run without a report (exit {STALLED_EXIT_CODE})",
        uvm_conformance::threads::thread_report()
    );
    std::process::exit(STALLED_EXIT_CODE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    /// A one-worker runtime watched with a 1.5 s limit; the receiver hears
    /// of a stall.
    fn watched_one_worker() -> (Runtime, Watchdog, std::sync::mpsc::Receiver<Duration>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let dog = Watchdog::start_with(&runtime, Duration::from_millis(1500), move |silent| {
            let _ = tx.send(silent);
        })
        .unwrap();
        (runtime, dog, rx)
    }

    #[test]
    fn fires_when_every_worker_is_blocked() {
        let (runtime, dog, rx) = watched_one_worker();
        // Let the beat task run once, then block the only worker.
        std::thread::sleep(Duration::from_millis(200));
        runtime.spawn(async { std::thread::sleep(Duration::from_secs(6)) });
        let silent = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            silent >= Duration::from_millis(1500),
            "fired after {silent:?}"
        );
        dog.stop();
        runtime.shutdown_background();
    }

    #[test]
    fn stays_quiet_while_tasks_await() {
        let (runtime, dog, rx) = watched_one_worker();
        runtime.block_on(async { tokio::time::sleep(Duration::from_secs(4)).await });
        assert!(rx.try_recv().is_err(), "fired while the runtime was idle");
        dog.stop();
    }
}
