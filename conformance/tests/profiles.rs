//! The self-test's other half: the honest fake passes every check, whatever
//! capabilities it has. A capability it lacks must be refused with
//! `NotSupported`, and that is what the checks then verify.

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
