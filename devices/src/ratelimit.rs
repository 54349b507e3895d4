//! Rate limits for log sites the guest can trigger.
//!
//! A hostile guest can make any device log on every access (a bad register
//! write, a broken descriptor, an eject of the host bridge, a console line).
//! Such a site must not be able to flood the host's log: it goes through a
//! [`LogBudget`], which lets [`DEFAULT_BURST`] events per
//! [`DEFAULT_INTERVAL`] through, counts the rest, and says
//! "N similar messages suppressed" with the next event it lets through.
//!
//! # Use
//!
//! At a guest-triggered log site, use [`log_limited!`](crate::log_limited)
//! with the `tracing` level and the usual arguments; the macro keeps one
//! static budget per call site (shared by every VM of the process):
//!
//! ```ignore
//! uvm_devices::log_limited!(warn, queue, "virtio: bad descriptor: {e}");
//! ```
//!
//! Where one VM or device must not use up another's budget, keep a
//! [`LogBudget`] in the device and ask it first:
//!
//! ```ignore
//! if let Some(suppressed) = self.log_budget.check() {
//!     tracing::warn!(suppressed, "vsock: packet for an unknown port");
//! }
//! ```
//!
//! Log sites the host drives (start, stop, hotplug requests of the VMM)
//! need no budget. The check is a few atomic operations, never a lock,
//! so vCPU threads and device workers can call it on every access.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Events a [`log_limited!`](crate::log_limited) site lets through per interval.
pub const DEFAULT_BURST: u32 = 10;
/// The interval of a [`log_limited!`](crate::log_limited) site.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The process's monotonic clock for budgets: time since its first use.
fn monotonic_now() -> Duration {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

/// Lets `burst` events per `interval` through and counts the others.
///
/// Intervals are fixed windows of the clock (not sliding). Under races
/// between threads a window may let a few more events through than
/// `burst`; it never blocks and never allocates.
#[derive(Debug)]
pub struct LogBudget {
    burst: u32,
    interval_ms: u64,
    /// The current window's number, plus one (0: no window yet).
    window: AtomicU64,
    /// Events let through in the current window.
    used: AtomicU32,
    /// Events suppressed since the last one let through.
    suppressed: AtomicU64,
}

impl LogBudget {
    /// A budget of `burst` events per `interval` (an interval under 1 ms
    /// counts as 1 ms).
    pub const fn new(burst: u32, interval: Duration) -> Self {
        let ms = interval.as_millis();
        let interval_ms = if ms == 0 {
            1
        } else if ms > u64::MAX as u128 {
            u64::MAX
        } else {
            ms as u64
        };
        LogBudget {
            burst,
            interval_ms,
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether an event may be logged now: `Some(n)` with the number of
    /// events suppressed since the last one let through, `None` if this
    /// one is suppressed (and counted).
    pub fn check(&self) -> Option<u64> {
        self.check_at(monotonic_now())
    }

    /// [`LogBudget::check`] at time `now` of a monotonic clock (the
    /// injectable form, for tests and callers with their own clock).
    pub fn check_at(&self, now: Duration) -> Option<u64> {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let window = (now_ms / self.interval_ms).saturating_add(1);
        let seen = self.window.load(Ordering::Acquire);
        if seen < window
            && self
                .window
                .compare_exchange(seen, window, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.used.store(0, Ordering::Release);
        }
        if self.used.load(Ordering::Acquire) >= self.burst
            || self.used.fetch_add(1, Ordering::AcqRel) >= self.burst
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::AcqRel))
    }

    /// Events suppressed since the last one let through.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Logs through `tracing` at `level` (`warn`, `info`, ...) under a static
/// [`LogBudget`] of this call site ([`DEFAULT_BURST`] per
/// [`DEFAULT_INTERVAL`]); the first event let through after suppressed ones
/// is preceded by "N similar messages suppressed". The arguments are those
/// of the `tracing` macro; the calling crate must depend on `tracing`.
#[macro_export]
macro_rules! log_limited {
    ($level:ident, $($arg:tt)+) => {{
        static BUDGET: $crate::ratelimit::LogBudget = $crate::ratelimit::LogBudget::new(
            $crate::ratelimit::DEFAULT_BURST,
            $crate::ratelimit::DEFAULT_INTERVAL,
        );
        if let ::std::option::Option::Some(suppressed) = BUDGET.check() {
            if suppressed > 0 {
                ::tracing::$level!(suppressed, "{suppressed} similar messages suppressed");
            }
            ::tracing::$level!($($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn burst_then_suppressed_then_reported() {
        let budget = LogBudget::new(3, S);
        let t0 = Duration::from_millis(100);
        assert_eq!(budget.check_at(t0), Some(0));
        assert_eq!(budget.check_at(t0), Some(0));
        assert_eq!(budget.check_at(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(budget.check_at(t0 + Duration::from_millis(500)), None);
        }
        assert_eq!(budget.suppressed(), 1000);
        // The next window lets events through and reports the count once.
        assert_eq!(budget.check_at(t0 + S), Some(1000));
        assert_eq!(budget.check_at(t0 + S), Some(0));
        assert_eq!(budget.suppressed(), 0);
    }

    #[test]
    fn a_zero_burst_suppresses_everything_and_odd_times_do_not_panic() {
        let budget = LogBudget::new(0, Duration::ZERO);
        assert_eq!(budget.check_at(Duration::ZERO), None);
        assert_eq!(budget.check_at(Duration::MAX), None);
        assert_eq!(budget.suppressed(), 2);
        let budget = LogBudget::new(1, Duration::MAX);
        assert_eq!(budget.check_at(Duration::MAX), Some(0));
        // A clock going backwards stays in the newest window.
        assert_eq!(budget.check_at(Duration::ZERO), None);
    }

    #[test]
    fn the_macro_compiles_and_limits() {
        for i in 0..100 {
            crate::log_limited!(debug, i, "flood {i}");
        }
        assert!(monotonic_now() < Duration::from_secs(3600));
    }
}
