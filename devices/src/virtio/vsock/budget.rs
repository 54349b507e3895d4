//! [`Budget`]: how much guest data the host may buffer for one VM, shared
//! by all its vsock connections.
//!
//! A connection reserves from the budget before it offers credit to the
//! guest (`buf_alloc`), so the credit it advertises is buffer space the host
//! really has; the reservation comes back as the host reads the data, and
//! when the connection and its stream are gone. Once the budget is spent,
//! new guest connections are refused with RST and existing ones get no
//! more credit, so a well-behaved guest stops sending; one that sends past
//! its credit is reset.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A pool of bytes, taken and given back by connections.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    free: AtomicUsize,
}

impl Budget {
    /// A budget of `total` bytes, all free.
    pub fn new(total: usize) -> Self {
        Budget {
            total,
            free: AtomicUsize::new(total),
        }
    }

    /// Takes up to `want` bytes; returns how many were taken.
    pub fn take(&self, want: usize) -> usize {
        let mut got = 0;
        // The closure always returns Some, so the update cannot fail.
        let _ = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                got = free.min(want);
                Some(free - got)
            });
        got
    }

    /// Gives back `n` bytes taken before.
    pub fn release(&self, n: usize) {
        let total = self.total;
        let _ = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                Some(free.saturating_add(n).min(total))
            });
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }

    /// The budget's size.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_is_there_and_never_exceeds_the_total() {
        let b = Budget::new(100);
        assert_eq!(b.take(60), 60);
        assert_eq!(b.take(60), 40);
        assert_eq!(b.take(1), 0);
        b.release(30);
        assert_eq!(b.available(), 30);
        b.release(1000);
        assert_eq!(b.available(), b.total());
    }
}
