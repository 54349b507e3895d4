//! VM-exit counters, by kind, reported in `Stats::counters` as `exits.<kind>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of exits counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitKind {
    /// Port I/O read.
    IoIn,
    /// Port I/O write.
    IoOut,
    /// MMIO read.
    MmioRead,
    /// MMIO write.
    MmioWrite,
    /// Port or MMIO access no device owns.
    Unhandled,
    /// HLT reaching user space.
    Hlt,
    /// Triple fault.
    Shutdown,
    /// KVM internal error or failed entry.
    InternalError,
    /// KVM system event (PSCI-style shutdown/reset).
    SystemEvent,
    /// KVM_RUN interrupted (a kick or a signal).
    Interrupted,
    /// Anything else.
    Other,
}

const NAMES: [&str; 11] = [
    "io_in",
    "io_out",
    "mmio_read",
    "mmio_write",
    "unhandled",
    "hlt",
    "shutdown",
    "internal_error",
    "system_event",
    "interrupted",
    "other",
];

/// Counters shared by every vCPU thread of a VM.
#[derive(Debug, Default)]
pub struct ExitCounters {
    counts: [AtomicU64; 11],
    /// Writes KVM held instead of exiting, handed over later.
    held_writes: AtomicU64,
    /// Queue notifications the device workers received (mostly exits KVM
    /// handled in the kernel through ioeventfds; one that reached the VMM
    /// as an MMIO write is also counted in `exits.mmio_write`).
    kicks: Arc<AtomicU64>,
    /// MSI messages the devices signalled (interrupts, mostly injected
    /// through irqfds without an exit).
    interrupts: Arc<AtomicU64>,
}

impl ExitCounters {
    /// Counts one exit of `kind`.
    pub fn count(&self, kind: ExitKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` writes KVM held instead of exiting (see
    /// [`crate::coalesced`]); they are not exits.
    pub fn count_held_writes(&self, n: u64) {
        self.held_writes.fetch_add(n, Ordering::Relaxed);
    }

    /// Where the device workers count the kicks they receive.
    pub fn kick_count(&self) -> Arc<AtomicU64> {
        self.kicks.clone()
    }

    /// Where the MSI sink counts the messages it signals.
    pub fn interrupt_count(&self) -> Arc<AtomicU64> {
        self.interrupts.clone()
    }

    /// The counters as `exits.<kind>` plus `exits.total`,
    /// `coalesced.writes` (writes that did not exit), and the queue kicks
    /// and interrupts of the devices (`virtio.kicks`, `virtio.interrupts`):
    /// exits to user space are only part of what a guest's I/O costs (a
    /// kick is an exit KVM mostly handles in the kernel; an interrupt is an
    /// injection, which may kick a running vCPU out of the guest).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut map: BTreeMap<String, u64> = NAMES
            .iter()
            .zip(&self.counts)
            .map(|(n, c)| (format!("exits.{n}"), c.load(Ordering::Relaxed)))
            .collect();
        let total = map.values().sum();
        map.insert("exits.total".into(), total);
        map.insert(
            "coalesced.writes".into(),
            self.held_writes.load(Ordering::Relaxed),
        );
        map.insert("virtio.kicks".into(), self.kicks.load(Ordering::Relaxed));
        map.insert(
            "virtio.interrupts".into(),
            self.interrupts.load(Ordering::Relaxed),
        );
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_totals_exits_and_names_what_did_not_exit() {
        let counters = ExitCounters::default();
        counters.count(ExitKind::IoIn);
        counters.count(ExitKind::MmioWrite);
        counters.count_held_writes(5);
        counters.kick_count().fetch_add(7, Ordering::Relaxed);
        counters.interrupt_count().fetch_add(3, Ordering::Relaxed);
        let map = counters.snapshot();
        assert_eq!(map["exits.io_in"], 1);
        assert_eq!(
            map["exits.total"], 2,
            "held writes, kicks and interrupts are not exits"
        );
        assert_eq!(map["coalesced.writes"], 5);
        assert_eq!(map["virtio.kicks"], 7);
        assert_eq!(map["virtio.interrupts"], 3);
    }
}
