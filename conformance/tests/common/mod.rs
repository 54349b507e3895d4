//! What the self-tests share: the template and quick run options.

#![allow(dead_code)]

use std::time::Duration;

use uvm_api::UvmConfig;
use uvm_conformance::{Report, RunOptions, Settings};

/// The config template of the self-tests.
pub fn template() -> UvmConfig {
    UvmConfig::builder("selftest")
        .vcpus(1)
        .memory_mib(256)
        .build()
        .unwrap()
}

/// Run options with short waits, so that broken backends fail fast, and some parallelism.
pub fn quick() -> RunOptions {
    RunOptions {
        timeout: Duration::from_secs(60),
        settings: Settings {
            removal_timeout: Duration::from_millis(1500),
            guest_timeout: Duration::from_millis(1000),
        },
        parallelism: 4,
        ..RunOptions::default()
    }
}

/// The names of the checks that failed, with their messages, one per line.
pub fn failures(report: &Report) -> String {
    report
        .failures()
        .map(|r| format!("  {}: {}", r.name, r.outcome.message().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks that fail against the honest fake because of a defect in the fake
/// itself, reported to its owner; the self-tests tolerate exactly these until
/// the fake is fixed. Empty when the fake is right.
pub const KNOWN_FAKE_DEFECTS: &[&str] = &[];

/// The failures of a report, less the known defects of the fake.
pub fn unexpected_failures(report: &Report) -> Vec<String> {
    report
        .failures()
        .filter(|r| !KNOWN_FAKE_DEFECTS.contains(&r.name.as_str()))
        .map(|r| format!("{}: {}", r.name, r.outcome.message().unwrap_or_default()))
        .collect()
}
