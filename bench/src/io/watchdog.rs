//! A watchdog for the benchmark's phases: each phase gets a time limit,
//! and a thread ends the process (exit code 3, naming the phase) when one
//! outlasts it, so that a VMM or guest that hangs where no timeout reaches
//! (a blocked runtime thread) cannot hold the lab forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The exit code of a process the watchdog ends.
pub const EXIT_CODE: i32 = 3;

#[derive(Debug)]
struct Phase {
    name: String,
    deadline: Option<Instant>,
}

/// The current phase and its deadline, watched by a thread.
#[derive(Debug, Clone)]
pub struct Watchdog {
    phase: Arc<Mutex<Phase>>,
}

impl Watchdog {
    /// Starts the watching thread; no phase is watched yet.
    pub fn start() -> std::io::Result<Self> {
        let watchdog = Watchdog {
            phase: Arc::new(Mutex::new(Phase {
                name: String::new(),
                deadline: None,
            })),
        };
        let phase = watchdog.phase.clone();
        std::thread::Builder::new()
            .name("io-bench-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let expired = {
                        let phase = phase.lock();
                        match phase.deadline {
                            Some(deadline) if Instant::now() >= deadline => {
                                Some(phase.name.clone())
                            }
                            _ => None,
                        }
                    };
                    if let Some(name) = expired {
                        eprintln!("io-bench: watchdog: {name} did not end in time; giving up");
                        std::process::exit(EXIT_CODE);
                    }
                }
            })?;
        Ok(watchdog)
    }

    /// Enters phase `name`, which must end within `limit`.
    pub fn phase(&self, name: impl Into<String>, limit: Duration) {
        let mut phase = self.phase.lock();
        phase.name = name.into();
        phase.deadline = Some(Instant::now() + limit);
    }

    /// Stops watching (between phases).
    pub fn idle(&self) {
        self.phase.lock().deadline = None;
    }

    /// The current phase's name.
    pub fn current(&self) -> String {
        self.phase.lock().name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_named_and_released() {
        let watchdog = Watchdog::start().unwrap();
        watchdog.phase("boot", Duration::from_secs(3600));
        assert_eq!(watchdog.current(), "boot");
        watchdog.idle();
        assert!(watchdog.phase.lock().deadline.is_none());
    }
}
