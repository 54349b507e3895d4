//! Recognises the L1 kernel's own reports that it is stuck.
//!
//! The nested lab's L1 runs under QEMU TCG with emulated SVM. Now and then
//! its kernel soft-locks (a CPU spinning in the kernel for over 20 s while
//! an L2 guest runs) and the L1 then hangs until the lab's timeout. The
//! kernel says so on the console first ("watchdog: BUG: soft lockup" or an
//! RCU stall), so `cargo xtask lab` can stop the L1 at once
//! and, when asked to (`--lockup-retries`), run the program again.
//!
//! Only lines of the L1 kernel console are matched: the program's output
//! comes on a channel of its own ([`crate::l1_console`]), so a program that
//! prints an L2 guest's lockup report does not stop its L1.

/// What the L1 kernel prints when a CPU or task is stuck.
const REPORTS: [&str; 3] = [
    "BUG: soft lockup",
    "rcu_sched self-detected stall",
    "rcu_sched detected stalls",
];

/// Whether a console line is the kernel reporting a lockup.
pub fn is_lockup_report(line: &str) -> bool {
    REPORTS.iter().any(|report| line.contains(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_kernel_reports() {
        assert!(is_lockup_report(
            "[  812.401233] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [kvm-pit/1234:311]"
        ));
        assert!(is_lockup_report(
            "[  900.000000] rcu: INFO: rcu_sched self-detected stall on CPU"
        ));
        assert!(is_lockup_report(
            "[ 1000.1] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"
        ));
    }

    #[test]
    fn ignores_ordinary_lines() {
        assert!(!is_lockup_report("UVM_LAB_START"));
        assert!(!is_lockup_report(
            "lifecycle     lifecycle_start_then_stop   PASSED   7881ms"
        ));
        assert!(!is_lockup_report(
            "[    0.1] clocksource: tsc: mask: 0xffffffffffffffff"
        ));
        // A slow task is not a stuck CPU.
        assert!(!is_lockup_report(
            "[ 1200.2] INFO: task uvm-conformanc:215 blocked for more than 120 seconds."
        ));
    }
}
