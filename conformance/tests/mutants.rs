//! The mutation self-test: single-flaw wrappers of the honest fake, each
//! breaking one promise of the table (`uvm_conformance::promises`). The suite
//! must fail each of them on the checks named here, which must be checks of
//! that promise in the table, and on no check outside the promise (plus the
//! few checks named as collateral, which exercise the broken call on their
//! way to something else).
//!
//! None repeats the seven flaws of `broken.rs`. The wrappers live in one
//! file per area under `mutants/`; `mutants/lie.rs` is the seam.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "mutants/cases.rs"]
mod cases;
mod common;
#[path = "mutants/lie.rs"]
mod lie;

use std::sync::Arc;

use lie::{Lie, LyingBackend};
use uvm_conformance::{Factory, RunOptions, promise, run_suite};

/// One single-flaw backend and what the suite must make of it.
pub struct Mutant {
    /// What it gets wrong, in a few words.
    pub name: &'static str,
    /// The id of the promise it breaks.
    pub promise: &'static str,
    /// Makes the lie of one VM.
    pub lie: fn() -> Box<dyn Lie>,
    /// Checks of that promise that must fail.
    pub caught_by: &'static [&'static str],
    /// Other checks that may fail: they exercise the broken call on the way
    /// to what they check.
    pub collateral: &'static [&'static str],
}

async fn verdict(mutant: &Mutant) -> Result<(), String> {
    let promise = promise(mutant.promise)
        .ok_or_else(|| format!("{}: no promise {}", mutant.name, mutant.promise))?;
    for name in mutant.caught_by {
        if !promise.checks.contains(name) {
            return Err(format!(
                "{}: {name} is not a check of promise {}",
                mutant.name, promise.id
            ));
        }
    }
    let make = mutant.lie;
    let factory = Factory::new(move || LyingBackend::new(Arc::new(make)));
    let options = RunOptions { ..common::quick() };
    let report = run_suite(&factory, &common::template(), &options).await;
    let failed: Vec<&str> = report.failures().map(|r| r.name.as_str()).collect();
    let mut problems = Vec::new();
    for name in mutant.caught_by {
        if !failed.contains(name) {
            problems.push(format!("not caught by {name}"));
        }
    }
    for name in &failed {
        if !promise.checks.contains(name)
            && !mutant.collateral.contains(name)
            && !common::KNOWN_FAKE_DEFECTS.contains(name)
        {
            problems.push(format!(
                "failed {name}, which is not about {}: {}",
                promise.id,
                report
                    .result(name)
                    .and_then(|r| r.outcome.message())
                    .unwrap_or_default()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} (breaks {}):\n    {}\n  every failure:\n{}",
            mutant.name,
            promise.id,
            problems.join("\n    "),
            common::failures(&report)
        ))
    }
}

/// Runs `mutants` one after the other (each run of the suite is parallel
/// inside) and reports every problem at the end rather than the first.
async fn all_caught(mutants: Vec<Mutant>) {
    let mut problems = Vec::new();
    for mutant in &mutants {
        let started = std::time::Instant::now();
        match verdict(mutant).await {
            Ok(()) => eprintln!(
                "caught: {} ({}) in {:.1?}",
                mutant.name,
                mutant.promise,
                started.elapsed()
            ),
            Err(problem) => problems.push(problem),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} mutants were not caught as they should be:\n{}",
        problems.len(),
        mutants.len(),
        problems.join("\n")
    );
}

/// One test per file of mutants, so that the areas run in parallel.
macro_rules! area_tests {
    ($($area:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $area() {
                all_caught(cases::$area::mutants()).await;
            }
        )*
    };
}

area_tests!(lifecycle exit stats scsi vpmem network shares vsock pci resources truthfulness bad_input concurrency cleanup);

/// The count the issue asks for, and no two mutants alike.
#[test]
fn at_least_thirty_distinct_mutants_over_every_area() {
    let mutants = cases::all();
    assert!(mutants.len() >= 30, "{} mutants", mutants.len());
    let mut names: Vec<&str> = mutants.iter().map(|m| m.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), mutants.len(), "two mutants share a name");
}
