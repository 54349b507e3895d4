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

/// The checks of a report, by outcome status.
fn names_with(report: &Report, status: &str) -> Vec<String> {
    report
        .results
        .iter()
        .filter(|r| r.outcome.status() == status)
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn every_format_starts_with_the_capability_matrix() {
    let table = String::from_utf8(cli(&with("table")).stdout).unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("CAPABILITY"), "{table}");
    assert!(lines.next().unwrap().starts_with("vpmem add"), "{table}");
    let areas = table.lines().position(|l| l.starts_with("AREA")).unwrap();
    let restore = table
        .lines()
        .position(|l| l.starts_with("restore"))
        .unwrap();
    assert!(restore < areas, "{table}");

    let json = String::from_utf8(cli(&with("json")).stdout).unwrap();
    let after_backend = &json[json.find("\"backend\"").unwrap()..];
    let next_key = after_backend.lines().nth(1).unwrap().trim();
    assert!(next_key.starts_with("\"capabilities\""), "{json}");

    let xml = String::from_utf8(cli(&with("junit")).stdout).unwrap();
    let first_property = xml
        .find("<property name=\"capability: vpmem add\"")
        .unwrap();
    assert!(first_property < xml.find("<testcase ").unwrap(), "{xml}");
}

#[test]
fn a_backend_lacking_capabilities_is_unclaimed_there_and_exits_zero() {
    let lacking = "memory,processor,cpu_group,pci,save,restore";
    let args = [
        "--backend",
        "mock",
        "--mock-without",
        lacking,
        "--jobs",
        "4",
        "--format",
        "json",
    ];
    let out = cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(names_with(&report, "failed"), Vec::<String>::new());
    let s = report.summary;
    assert_eq!(s.passed + s.unclaimed + s.failed + s.skipped, s.total);
    assert_eq!(s.total, uvm_conformance::all_checks().len());

    // Every check of the lacking areas is unclaimed, and every unclaimed
    // check names a capability that was switched off.
    let unclaimed = names_with(&report, "unclaimed");
    assert_eq!(unclaimed.len(), s.unclaimed);
    for area in ["memory", "processor", "cpu_group", "pci"] {
        let checks = uvm_conformance::area_checks(area.parse().unwrap());
        for c in checks {
            assert!(
                unclaimed.iter().any(|n| n == c.name),
                "{} is not unclaimed",
                c.name
            );
        }
    }
    let switched_off = [
        "(memory, update)",
        "(processor, update)",
        "(cpu_group, update)",
        "(pci, add)",
        "(pci, remove)",
        "action save",
        "restore is not claimed",
    ];
    for r in report.results.iter().filter(|r| r.outcome.is_unclaimed()) {
        let message = r.outcome.message().unwrap_or_default();
        assert!(
            switched_off.iter().any(|c| message.contains(c)),
            "{} is unclaimed for another reason: {message}",
            r.name
        );
    }
    for name in [
        "lifecycle_save_when_paused",
        "lifecycle_restore_from_snapshot",
        "truthfulness_pci_add",
    ] {
        assert!(
            unclaimed.iter().any(|n| n == name),
            "{name} is not unclaimed"
        );
    }
    for name in [
        "truthfulness_undefined_pairs_unsupported",
        "scsi_hot_add_visible_in_guest",
    ] {
        assert!(
            report.result(name).unwrap().outcome.is_passed(),
            "{name} did not pass"
        );
    }

    // The matrix says what was switched off.
    let memory = report
        .capabilities
        .resources
        .iter()
        .find(|p| p.resource == uvm_api::Resource::Memory)
        .unwrap();
    assert_eq!(memory.claim, uvm_conformance::Claim::NotClaimed);
    assert_eq!(
        report.capabilities.restore,
        uvm_conformance::Claim::NotClaimed
    );
}

#[test]
fn the_table_shows_unclaimed_rows_and_totals() {
    let out = cli(&[
        "--backend",
        "mock",
        "--mock-without",
        "pci",
        "--only",
        "pci",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("UNCLAIMED"))
        .collect();
    let pci_checks = uvm_conformance::area_checks(uvm_conformance::Area::Pci).len();
    assert_eq!(rows.len(), pci_checks, "{text}");
    assert!(
        text.contains("pci add                  not claimed"),
        "{text}"
    );
    let totals = format!("conformance: 0 passed, {pci_checks} unclaimed, 0 failed, 0 skipped");
    assert_eq!(text.lines().last(), Some(totals.as_str()));
}

#[test]
fn mock_without_is_for_the_mock_only_and_names_must_exist() {
    let out = cli(&["--backend", "kvm", "--mock-without", "pci"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&["--backend", "mock", "--mock-without", "floppy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("floppy"), "{err}");
}
