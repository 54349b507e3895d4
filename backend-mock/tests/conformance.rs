//! The whole conformance suite against the fake, one test per check, under
//! the full capability profile and with every capability off.

// Integration tests are only built for tests: this lets clippy treat the
// macro-generated functions as test code.
#![cfg(test)]

use uvm_backend_mock::{FakeBackend, Profile};

uvm_conformance::conformance_tests!(
    mod all_capabilities,
    FakeBackend::new,
    uvm_api::UvmConfig::builder("conformance").build().unwrap()
);

uvm_conformance::conformance_tests!(
    mod no_capabilities,
    || FakeBackend::with_profile(Profile::none()),
    uvm_api::UvmConfig::builder("conformance").build().unwrap()
);
