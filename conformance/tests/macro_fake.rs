//! The suite through `conformance_tests!`, against the honest fake: one test
//! per check, under every capability, under none, and under a random subset.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use uvm_api::{Action, UvmConfig};
use uvm_backend_mock::{FakeBackend, Profile};

uvm_conformance::conformance_tests!(
    mod every_capability,
    FakeBackend::new,
    UvmConfig::builder("macro-all").build().unwrap(),
    known_failures = common::KNOWN_FAKE_DEFECTS,
);

uvm_conformance::conformance_tests!(
    mod no_capability,
    || FakeBackend::with_profile(Profile::none()),
    UvmConfig::builder("macro-none").memory_mib(128).build().unwrap(),
);

// The two-argument form, as the README shows it: a module called `conformance`.
// (Without pause, so that the fake's known defect cannot show.)
uvm_conformance::conformance_tests!(
    || FakeBackend::with_profile(Profile::random(5).without_action(Action::Pause)),
    UvmConfig::builder("macro-random").build().unwrap()
);

/// The list the test macro expands, as (area, name) pairs.
macro_rules! listed {
    ($($area:ident: $($name:ident)*;)*) => {
        [$($((stringify!($area), stringify!($name))),*),*]
    };
}

#[test]
fn the_macro_has_one_test_per_check_in_suite_order() {
    let listed = uvm_conformance::__uvm_conformance_with_checks!(listed);
    let suite: Vec<(&str, &str)> = uvm_conformance::all_checks()
        .iter()
        .map(|c| (c.area.as_str(), c.name))
        .collect();
    assert_eq!(listed.to_vec(), suite);
}
