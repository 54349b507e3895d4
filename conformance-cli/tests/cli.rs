//! The `uvm-conformance` binary: a table, JSON and JUnit of the same
//! outcomes, exit codes, and the error for an unknown backend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::process::{Command, Output};

use uvm_conformance::Report;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uvm-conformance"))
        .args(args)
        .output()
        .expect("the binary runs")
}

const SELECTION: &[&str] = &[
    "--backend",
    "mock",
    "--only",
    "exit,stats,scsi",
    "--jobs",
    "2",
];

fn with(format: &str) -> Vec<&str> {
    let mut args = SELECTION.to_vec();
    args.extend(["--format", format]);
    args
}

#[test]
fn table_and_json_agree_and_exit_zero() {
    let table = cli(&with("table"));
    let text = String::from_utf8(table.stdout).unwrap();
    assert_eq!(table.status.code(), Some(0), "{text}");
    let json = cli(&with("json"));
    assert_eq!(json.status.code(), Some(0));
    let report: Report = serde_json::from_slice(&json.stdout).unwrap();
    assert!(report.success());
    assert_eq!(report.backend, "mock");
    assert!(report.summary.total >= 20, "{:?}", report.summary);

    // Every check of the JSON report is a row of the table, with the same outcome.
    let rows: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.len() >= 3 && report.result(cols[1]).is_some()).then(|| (cols[1], cols[2]))
        })
        .collect();
    assert_eq!(rows.len(), report.results.len(), "{text}");
    for r in &report.results {
        assert_eq!(
            rows[r.name.as_str()],
            r.outcome.status().to_uppercase(),
            "{}",
            r.name
        );
    }
    let last = text.lines().last().unwrap();
    assert_eq!(last, report.summary_line());
    assert!(last.contains(" 0 failed"), "{last}");
}

#[test]
fn junit_lists_every_check() {
    let out = cli(&with("junit"));
    assert_eq!(out.status.code(), Some(0));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.starts_with("<?xml"));
    let json: Report = serde_json::from_slice(&cli(&with("json")).stdout).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), json.results.len());
    assert!(xml.contains("failures=\"0\""));
}

#[test]
fn unknown_backend_exits_two_naming_the_registered_ones() {
    let out = cli(&["--backend", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("nope") && err.contains("mock"), "{err}");
}

#[test]
fn unknown_area_is_a_usage_error() {
    let out = cli(&["--backend", "mock", "--only", "floppy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("floppy") && err.contains("lifecycle"), "{err}");
}

#[test]
fn list_names_every_check() {
    let out = cli(&["--list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), uvm_conformance::all_checks().len());
}

#[test]
fn single_check_by_name() {
    let out = cli(&[
        "--backend",
        "mock",
        "--check",
        "exit_force_stop_is_killed",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.results[0].name, "exit_force_stop_is_killed");
}

#[test]
fn a_busy_but_healthy_run_is_not_taken_for_a_stall() {
    // The runtime keeps beating while checks run, so even a short stall
    // limit does not end a run of several seconds.
    let out = cli(&[
        "--backend",
        "mock",
        "--only",
        "exit,lifecycle",
        "--stall-timeout",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("has not run"), "watchdog fired: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}
