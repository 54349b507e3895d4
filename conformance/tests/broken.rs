//! The self-test: deliberately broken backends, each a wrapper around the
//! honest fake that gets one thing wrong. The suite must fail each of them on
//! the checks about that thing (asserted by name), and on no check about
//! anything else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
#[path = "broken/wrapper.rs"]
mod wrapper;

use uvm_conformance::{Area, Factory, Report, RunOptions, run_suite};
use wrapper::{BrokenBackend, Flaw};

/// What the suite must make of a broken backend.
struct Expect {
    /// Checks that must fail.
    must_fail: &'static [&'static str],
    /// Checks that must pass (the flaw is elsewhere).
    must_pass: &'static [&'static str],
    /// Other checks may fail only if their name contains one of these: they
    /// exercise the flawed call on the way to what they check.
    may_fail_if_named: &'static [&'static str],
    /// Only these areas run (all if empty).
    areas: &'static [Area],
}

async fn caught(flaw: Flaw, expect: Expect) -> Report {
    let factory = Factory::new(move || BrokenBackend::new(flaw));
    let options = RunOptions {
        areas: expect.areas.to_vec(),
        ..common::quick()
    };
    let report = run_suite(&factory, &common::template(), &options).await;
    let failed: Vec<&str> = report.failures().map(|r| r.name.as_str()).collect();
    eprintln!(
        "{flaw:?}: {} failed:\n{}",
        failed.len(),
        common::failures(&report)
    );
    for name in expect.must_fail {
        assert!(
            report.result(name).is_some(),
            "{name} is not a check of the suite"
        );
        assert!(
            failed.contains(name),
            "{flaw:?} was not caught by {name}; failures:\n{}",
            common::failures(&report)
        );
    }
    for name in expect.must_pass {
        let result = report.result(name).expect("a check of the suite");
        assert!(
            result.outcome.is_passed(),
            "{flaw:?} made {name} end {}",
            result.outcome
        );
    }
    for name in &failed {
        assert!(
            expect.must_fail.contains(name)
                || common::KNOWN_FAKE_DEFECTS.contains(name)
                || expect
                    .may_fail_if_named
                    .iter()
                    .any(|part| name.contains(part)),
            "{flaw:?} made {name} fail, which is not about that flaw: {}",
            report
                .result(name)
                .and_then(|r| r.outcome.message())
                .unwrap_or_default()
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scsi_add_that_does_nothing() {
    caught(
        Flaw::ScsiAddDoesNothing,
        Expect {
            must_fail: &[
                "scsi_cold_plug_visible_after_start",
                "scsi_hot_add_visible_in_guest",
                "scsi_same_lun_twice_already_exists",
                "truthfulness_scsi_add",
                "concurrency_same_lun_race_one_wins",
            ],
            must_pass: &[
                "network_hot_add_visible_in_guest",
                "truthfulness_network_add",
            ],
            may_fail_if_named: &[
                "scsi",
                "lun",
                "lifecycle_every_call",
                "cleanup_image",
                "cleanup_pending_removals",
                "hot_plugs",
            ],
            areas: &[],
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_add_denied_but_performed() {
    caught(
        Flaw::NetworkAddDenied,
        Expect {
            must_fail: &[
                "truthfulness_network_add",
                "network_cold_plug_visible_after_start",
                "network_hot_add_visible_in_guest",
                "network_boot_config_nic_visible",
            ],
            must_pass: &[
                "network_remove_unknown_not_found",
                "truthfulness_supported_within_capabilities",
            ],
            may_fail_if_named: &[
                "network",
                "nic",
                "lifecycle_every_call",
                "concurrency_adds_racing_stop",
            ],
            areas: &[],
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_that_panic() {
    let report = caught(
        Flaw::StatsPanics,
        Expect {
            must_fail: &[
                "stats_before_start",
                "stats_uptime_advances_while_running",
                "stats_processor_matches_config",
                "stats_memory_matches_config",
                "stats_while_paused",
                "stats_frozen_after_stop",
                "stats_in_every_state",
                "concurrency_stats_during_lifecycle",
            ],
            must_pass: &["lifecycle_start_from_created"],
            // Memory, processor limits and the CPU group are read back through stats.
            may_fail_if_named: &["memory", "processor", "cpu_group", "resource_updates"],
            areas: &[],
        },
    )
    .await;
    for r in report
        .failures()
        .filter(|r| !common::KNOWN_FAKE_DEFECTS.contains(&r.name.as_str()))
    {
        let message = r.outcome.message().unwrap_or_default();
        assert!(message.contains("panicked"), "{}: {message}", r.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_that_never_completes() {
    caught(
        Flaw::RemovalNeverCompletes,
        Expect {
            must_fail: &[
                "scsi_hot_remove_leaves_guest",
                "vpmem_hot_remove_leaves_guest",
                "network_hot_remove_leaves_guest",
                "shares_hot_remove_leaves_guest",
                "pci_hot_remove_completes",
                "truthfulness_scsi_remove",
                "cleanup_pending_removals_complete_on_stop",
            ],
            must_pass: &[
                "scsi_hot_add_visible_in_guest",
                "scsi_remove_unknown_not_found",
            ],
            may_fail_if_named: &[
                "stays_in_its_vm",
                "remove",
                "removal",
                "readd",
                "reserved",
                "shares_same_name_across_kinds",
                "hot_plugs",
            ],
            areas: &[],
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_leaked_per_vm() {
    let report = caught(
        Flaw::LeaksThreadPerVm,
        Expect {
            must_fail: &[
                "cleanup_no_thread_or_fd_leak_after_100_vms",
                "cleanup_no_thread_or_fd_leak_after_100_hot_plugs",
            ],
            must_pass: &["cleanup_no_task_leak_after_100_vms"],
            may_fail_if_named: &[],
            // Every VM leaks a thread for good: run only what needs VMs to
            // show the flaw is caught there and nowhere else, not the whole suite.
            areas: &[Area::Lifecycle, Area::Exit, Area::Cleanup],
        },
    )
    .await;
    let message = report
        .result("cleanup_no_thread_or_fd_leak_after_100_vms")
        .and_then(|r| r.outcome.message())
        .unwrap_or_default();
    assert!(message.contains("100 threads"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_reported_as_shutdown() {
    caught(
        Flaw::KilledReportedAsShutdown,
        Expect {
            must_fail: &[
                "exit_force_stop_is_killed",
                "exit_stop_before_start_is_killed",
                "exit_stop_while_paused_is_killed",
                "exit_concurrent_waiters_same_status",
            ],
            must_pass: &[
                "exit_guest_poweroff_is_shutdown",
                "exit_graceful_stop_reason",
            ],
            may_fail_if_named: &[
                "lifecycle_every_call_on_stopped",
                "concurrency_adds_racing_stop",
                "concurrency_vms_are_isolated",
            ],
            areas: &[],
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_added_disk_the_guest_never_sees() {
    caught(
        Flaw::HotAddedDiskInvisible,
        Expect {
            must_fail: &[
                "scsi_hot_add_visible_in_guest",
                "scsi_cold_and_hot_plug_agree",
                "truthfulness_scsi_add",
                "concurrency_hot_adds_different_luns_all_land",
            ],
            must_pass: &[
                "scsi_cold_plug_visible_after_start",
                "scsi_boot_config_disk_visible",
            ],
            may_fail_if_named: &["scsi", "lun"],
            areas: &[],
        },
    )
    .await;
}
