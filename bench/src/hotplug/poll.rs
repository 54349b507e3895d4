//! Asking the guest probe, in a tight loop, until the guest shows (or no
//! longer shows) a device.

use std::time::{Duration, Instant};

use uvm_api::GuestProbe;

use super::kind::Mark;
use crate::error::{BenchError, Result};
use crate::stats::median;

/// How to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// Pause between two probes (zero: none).
    pub gap: Duration,
    /// How long to wait at most.
    pub timeout: Duration,
}

/// What a polling loop found.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// From the caller's start instant to the end of the first probe that
    /// showed the wanted state (an upper bound; the guest got there during
    /// that probe or the gap before it).
    pub after: Duration,
    /// Probe round trips made, the last one included.
    pub probes: u32,
    /// Median duration of one probe round trip (the resolution of `after`).
    pub median_probe: Duration,
    /// Probes that failed (the loop goes on through them).
    pub failed_probes: u32,
}

impl Poll {
    /// Probes until the guest's view of `mark` is `present`, counting from
    /// `since`; `Timeout` after [`Poll::timeout`] from now.
    pub async fn until(
        &self,
        probe: &dyn GuestProbe,
        mark: &Mark,
        present: bool,
        since: Instant,
    ) -> Result<Polled> {
        let deadline = Instant::now() + self.timeout;
        let mut round_trips = Vec::new();
        let mut failed = 0u32;
        let mut last_error = None;
        loop {
            let asked = Instant::now();
            let answer = mark.seen_by(probe).await;
            let answered = Instant::now();
            round_trips.push((answered - asked).as_secs_f64());
            match answer {
                Ok(seen) if seen == present => {
                    let median_probe = median(&round_trips).unwrap_or_default();
                    return Ok(Polled {
                        after: answered.saturating_duration_since(since),
                        probes: u32::try_from(round_trips.len()).unwrap_or(u32::MAX),
                        median_probe: Duration::from_secs_f64(median_probe),
                        failed_probes: failed,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    last_error = Some(e.to_string());
                }
            }
            if answered >= deadline {
                let state = if present { "present" } else { "gone" };
                let last = last_error
                    .map(|e| format!("; {failed} probes failed, the last with: {e}"))
                    .unwrap_or_default();
                return Err(BenchError::Timeout {
                    what: format!(
                        "the {mark} {state} in the guest ({} probes{last})",
                        round_trips.len()
                    ),
                    after: self.timeout,
                });
            }
            if !self.gap.is_zero() {
                tokio::time::sleep(self.gap).await;
            }
        }
    }
}
