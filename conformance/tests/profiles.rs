//! The self-test's other half: the honest fake passes every check, whatever
//! capabilities it has. A capability it lacks must be refused with
//! `NotSupported`, and that is what the checks then verify: such a check ends
//! `unclaimed`, never `passed`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use uvm_api::{Action, Operation, Resource};
use uvm_backend_mock::{FakeBackend, Profile};
use uvm_conformance::{Factory, Report, run_suite};

async fn passes(label: &str, profile: fn() -> Profile) -> Report {
    let factory = Factory::new(move || FakeBackend::with_profile(profile()));
    let report = run_suite(&factory, &common::template(), &common::quick()).await;
    let unexpected = common::unexpected_failures(&report);
    assert!(
        unexpected.is_empty(),
        "the honest fake under profile {label} failed {} checks:\n  {}",
        unexpected.len(),
        unexpected.join("\n  ")
    );
    eprintln!("profile {label}: {}", report.summary_line());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capability() {
    let report = passes("all", Profile::all).await;
    // Everything is claimed: nothing can end unclaimed.
    assert_eq!(report.summary.unclaimed, 0, "{}", report.summary_line());
    // With everything on, only what no probe can see may be skipped.
    for r in report.results.iter().filter(|r| r.outcome.is_skipped()) {
        assert!(
            r.name.starts_with("pci_"),
            "{} skipped: {}",
            r.name,
            r.outcome
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capability() {
    let report = passes("none", Profile::none).await;
    // Unclaimed capabilities are checked (NotSupported), not skipped: only
    // what needs a paused VM, which this profile cannot reach, may skip.
    for r in report.results.iter().filter(|r| r.outcome.is_skipped()) {
        let reason = r.outcome.message().unwrap_or_default();
        assert!(
            reason.contains("pause") || reason.contains("resume"),
            "{} skipped: {reason}",
            r.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_profile_1() {
    passes("random(1)", || Profile::random(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_profile_7() {
    passes("random(7)", || Profile::random(7)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_profile_42() {
    passes("random(42)", || Profile::random(42)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_profile_2024() {
    passes("random(2024)", || Profile::random(2024)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_profile_987654321() {
    passes("random(987654321)", || Profile::random(987_654_321)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_without_removes() {
    passes("adds without removes", || {
        let mut p = Profile::all();
        for r in [
            Resource::Scsi,
            Resource::VPMem,
            Resource::Network,
            Resource::VirtioFs,
            Resource::Pci,
        ] {
            p = p.without(r, Operation::Remove);
        }
        p
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_without_adds() {
    passes("removes without adds", || {
        let mut p = Profile::all();
        for r in [
            Resource::Scsi,
            Resource::VPMem,
            Resource::Network,
            Resource::Plan9,
            Resource::Pci,
        ] {
            p = p.without(r, Operation::Add);
        }
        p
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_without_resume_or_save() {
    passes("pause without resume or save", || {
        Profile::all()
            .without_action(Action::Resume)
            .without_action(Action::Save)
    })
    .await;
}

/// The capabilities of the kvm backend today (with virtiofsd installed): no
/// memory, processor or CPU-group updates, no PCI, no 9p or VSMB shares, no
/// save or restore.
fn like_kvm() -> Profile {
    let mut p = Profile::all()
        .without_action(Action::Save)
        .with_restore(false);
    for (r, op) in [
        (Resource::Memory, Operation::Update),
        (Resource::Processor, Operation::Update),
        (Resource::CpuGroup, Operation::Update),
        (Resource::Pci, Operation::Add),
        (Resource::Pci, Operation::Remove),
        (Resource::Plan9, Operation::Add),
        (Resource::Plan9, Operation::Remove),
        (Resource::Vsmb, Operation::Add),
        (Resource::Vsmb, Operation::Remove),
    ] {
        p = p.without(r, op);
    }
    p
}

/// Whether check `name` is about memory, processor, CPU group, PCI, 9p or
/// VSMB alone, save or restore (the two-VM checks of PCI and of the
/// resource updates too). (The other share checks pass on virtio-fs;
/// shares of several kinds with one name cannot coexist where only one kind
/// is claimed.)
fn about_what_kvm_lacks(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "truthfulness_plan9_",
        "truthfulness_vsmb_",
        "shares_same_name_across_kinds_coexist",
        "memory_",
        "processor_",
        "cpu_group_",
        "pci_",
        "bad_input_pci_",
        "truthfulness_pci_",
        "truthfulness_memory_",
        "truthfulness_processor_",
        "truthfulness_cpu_group_",
        "truthfulness_action_save",
        "lifecycle_save_",
        "lifecycle_restore_",
        "truthfulness_unclaimed_restore_",
        "concurrency_pci_",
        "concurrency_resource_updates_",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_exactly_where_the_capability_is_lacking() {
    let report = passes("like kvm", like_kvm).await;
    let unclaimed: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.outcome.is_unclaimed())
        .map(|r| r.name.as_str())
        .collect();
    for r in &report.results {
        assert_eq!(
            r.outcome.is_unclaimed(),
            about_what_kvm_lacks(&r.name),
            "{} ended {}",
            r.name,
            r.outcome
        );
        if about_what_kvm_lacks(&r.name) {
            let message = r.outcome.message().unwrap_or_default();
            assert!(
                message.contains("not claimed") && message.contains("honest refusal"),
                "{}: {message}",
                r.name
            );
        } else {
            assert!(r.outcome.is_passed(), "{} ended {}", r.name, r.outcome);
        }
    }
    assert_eq!(report.summary.unclaimed, unclaimed.len());
    assert!(unclaimed.len() >= 30, "only {unclaimed:?}");
    assert_eq!(
        report.summary.passed
            + report.summary.unclaimed
            + report.summary.failed
            + report.summary.skipped,
        report.summary.total
    );
}
