//! The VM's clocks: uptime (wall time since start) and running time (wall
//! time spent running, pauses excluded).
//!
//! Uses `tokio::time::Instant`, so tests with paused tokio time control it.

use std::time::Duration;

use tokio::time::Instant;

/// Share of running wall time each simulated vCPU spends on a host CPU, in percent.
pub(crate) const VCPU_BUSY_PERCENT: u32 = 10;

#[derive(Debug, Default, Clone)]
pub(crate) struct Clock {
    /// When the guest started (or was restored), if it has.
    started: Option<Instant>,
    /// When it stopped, if it has after starting.
    stopped: Option<Instant>,
    /// Uptime carried over from a snapshot.
    uptime_before: Duration,
    /// Running time accumulated in finished running periods.
    ran: Duration,
    /// Start of the current running period.
    running_since: Option<Instant>,
}

impl Clock {
    /// The guest starts running now.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.running_since = Some(now);
    }

    /// A restored guest: it had run for `uptime` (`ran` of it running) and is paused now.
    pub fn restored(now: Instant, uptime: Duration, ran: Duration) -> Clock {
        Clock {
            started: Some(now),
            stopped: None,
            uptime_before: uptime,
            ran,
            running_since: None,
        }
    }

    /// The virtual CPUs park.
    pub fn pause(&mut self, now: Instant) {
        if let Some(since) = self.running_since.take() {
            self.ran += now.saturating_duration_since(since);
        }
    }

    /// The virtual CPUs run again.
    pub fn resume(&mut self, now: Instant) {
        if self.running_since.is_none() {
            self.running_since = Some(now);
        }
    }

    /// The VM exits: every figure freezes.
    pub fn stop(&mut self, now: Instant) {
        self.pause(now);
        if self.started.is_some() && self.stopped.is_none() {
            self.stopped = Some(now);
        }
    }

    /// Time since start, pauses included; zero before start, frozen at stop.
    pub fn uptime(&self, now: Instant) -> Duration {
        match self.started {
            None => Duration::ZERO,
            Some(started) => {
                let end = self.stopped.unwrap_or(now);
                self.uptime_before + end.saturating_duration_since(started)
            }
        }
    }

    /// Time spent running (not paused), frozen at stop.
    pub fn running(&self, now: Instant) -> Duration {
        let current = self
            .running_since
            .map(|since| now.saturating_duration_since(since))
            .unwrap_or_default();
        self.ran + current
    }

    /// Host CPU time of one simulated vCPU.
    pub fn vcpu_runtime(&self, now: Instant) -> Duration {
        self.running(now) * VCPU_BUSY_PERCENT / 100
    }

    /// Whether the guest ever started.
    pub fn has_started(&self) -> bool {
        self.started.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_excludes_pauses_and_freezes_at_stop() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Clock::default();
        assert_eq!(c.uptime(t0 + s(5)), Duration::ZERO);
        c.start(t0);
        c.pause(t0 + s(10));
        assert_eq!(c.running(t0 + s(20)), s(10));
        assert_eq!(c.uptime(t0 + s(20)), s(20));
        c.resume(t0 + s(20));
        c.stop(t0 + s(25));
        assert_eq!(c.running(t0 + s(100)), s(15));
        assert_eq!(c.uptime(t0 + s(100)), s(25));
        assert_eq!(c.vcpu_runtime(t0 + s(100)), Duration::from_millis(1500));
    }
}
