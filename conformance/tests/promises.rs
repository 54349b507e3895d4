//! The promise table is complete and true: every promise has a check, every
//! check answers to a promise, every name is a check of the suite, and the
//! table in the docs is the data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;

use uvm_conformance::{all_checks, promises, unheld};

fn check_names() -> BTreeSet<&'static str> {
    all_checks().iter().map(|c| c.name).collect()
}

#[test]
fn every_promise_has_a_check_of_the_suite() {
    let names = check_names();
    let lacking: Vec<&str> = promises()
        .iter()
        .filter(|p| p.checks.is_empty())
        .map(|p| p.id)
        .collect();
    assert!(lacking.is_empty(), "promises without a check: {lacking:?}");
    let unknown: Vec<String> = promises()
        .iter()
        .flat_map(|p| p.checks.iter().map(move |c| (p.id, *c)))
        .filter(|(_, c)| !names.contains(c))
        .map(|(p, c)| format!("{p} -> {c}"))
        .collect();
    assert!(unknown.is_empty(), "not checks of the suite: {unknown:?}");
}

#[test]
fn every_check_answers_to_a_promise() {
    let held: BTreeSet<&str> = promises()
        .iter()
        .flat_map(|p| p.checks.iter().copied())
        .collect();
    let orphans: Vec<&str> = check_names()
        .into_iter()
        .filter(|c| !held.contains(c))
        .collect();
    assert!(orphans.is_empty(), "checks no promise names: {orphans:?}");
}

#[test]
fn promise_ids_are_unique_and_name_their_area() {
    let mut seen = BTreeSet::new();
    let ids = promises()
        .iter()
        .map(|p| (p.id, p.area))
        .chain(unheld().iter().map(|u| (u.id, u.area)));
    for (id, area) in ids {
        assert!(seen.insert(id), "{id} is listed twice");
        let prefix = format!("{area}.");
        assert!(id.starts_with(&prefix), "{id} is not in area {area}");
    }
}

#[test]
fn every_unheld_promise_names_what_the_contract_lacks() {
    for u in unheld() {
        assert!(!u.needs.trim().is_empty(), "{} names no read-back", u.id);
    }
}

/// `PROMISES.md`, included in the crate docs, is generated from the data;
/// `UPDATE_PROMISES=1` rewrites it.
#[test]
fn the_table_in_the_docs_is_the_data() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/PROMISES.md");
    let want = uvm_conformance::promises::promises_markdown();
    if std::env::var_os("UPDATE_PROMISES").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap();
    assert!(
        have == want,
        "PROMISES.md is out of date: run UPDATE_PROMISES=1 cargo test -p uvm-conformance --test promises"
    );
}
