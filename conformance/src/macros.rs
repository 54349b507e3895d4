//! `conformance_tests!`: the whole suite as one `#[test]` per check.

use std::time::Duration;

use uvm_api::UvmConfig;

use crate::factory::Factory;
use crate::outcome::Outcome;
use crate::runner::{RunOptions, run_named};

/// Expands to a module with one `#[test]` per conformance check, named as the check.
///
/// ```ignore
/// uvm_conformance::conformance_tests!(
///     uvm_backend_mock::FakeBackend::new,
///     uvm_api::UvmConfig::builder("conformance").build().unwrap()
/// );
/// ```
///
/// The first argument is a factory: anything callable as `Fn() -> B` where `B`
/// implements `uvm_api::Backend`; each test calls it once. The second is the
/// config template (no boot devices: the checks add what they need). Names
/// the caller's module imports can be used in both, because the generated
/// module imports `super::*`. The default module name is `conformance`; give
/// another with `conformance_tests!(mod NAME, factory, config)` to run the
/// suite more than once in one file (for example under several profiles).
///
/// Each test runs its check on a fresh multi-threaded tokio runtime with two
/// workers (no `tokio` dependency is needed in the caller). A failed check
/// panics with its message; a skipped one prints `SKIPPED <name>: <reason>`
/// to stderr and passes; an unclaimed one (the backend does not claim the
/// capability and refused it honestly) prints `UNCLAIMED <name>: <reason>`
/// and passes too: it is not a failure. The checks that count the process's threads and file
/// descriptors take a lock every other generated test shares, so they run
/// alone; put the macro in a test file of its own so that tests of yours do
/// not run beside them. `UVM_CONFORMANCE_TIMEOUT_SECS` raises the time limit
/// of each check (default 30 s).
///
/// A backend that does not pass everything yet can name its known failures:
/// `conformance_tests!(mod NAME, factory, config, known_failures = &["check_name"])`.
/// Such a check still runs; its failure is printed as `KNOWN FAILURE` and
/// the test passes, but if it no longer fails (it passes, or ends
/// unclaimed) the test fails, so that the list is kept true.
#[macro_export]
macro_rules! conformance_tests {
    (mod $module:ident, $factory:expr, $config:expr, known_failures = $known:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            fn __uvm_conformance_factory() -> $crate::Factory {
                $crate::Factory::new($factory)
            }

            fn __uvm_conformance_config() -> $crate::macro_support::UvmConfig {
                $config
            }

            fn __uvm_conformance_known() -> &'static [&'static str] {
                $known
            }

            $crate::__uvm_conformance_with_checks!($crate::__uvm_conformance_tests);
        }
    };
    (mod $module:ident, $factory:expr, $config:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            fn __uvm_conformance_factory() -> $crate::Factory {
                $crate::Factory::new($factory)
            }

            fn __uvm_conformance_config() -> $crate::macro_support::UvmConfig {
                $config
            }

            fn __uvm_conformance_known() -> &'static [&'static str] {
                &[]
            }

            $crate::__uvm_conformance_with_checks!($crate::__uvm_conformance_tests);
        }
    };
    ($factory:expr, $config:expr $(,)?) => {
        $crate::conformance_tests!(mod conformance, $factory, $config);
    };
}

/// Generates the tests of [`conformance_tests!`] from the list of checks
/// (`area: name ...;`), one test per check, named as the check.
#[doc(hidden)]
#[macro_export]
macro_rules! __uvm_conformance_tests {
    ($($area:ident: $($name:ident)*;)*) => {
        $($(
            #[test]
            fn $name() {
                $crate::macro_support::run_test(
                    ::core::stringify!($name),
                    __uvm_conformance_factory(),
                    __uvm_conformance_config(),
                    __uvm_conformance_known(),
                );
            }
        )*)*
    };
}

/// Runs check `name` as a test: panics if it fails (unless it is a known
/// failure), prints a line to stderr if it is skipped or unclaimed.
#[doc(hidden)]
pub fn run_test(name: &str, factory: Factory, template: UvmConfig, known_failures: &[&str]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => panic!("{name}: could not build a tokio runtime: {e}"),
    };
    let options = options_from_env();
    let result = runtime.block_on(run_named(name, &factory, &template, &options));
    let known = known_failures.contains(&name);
    match result.map(|r| r.outcome) {
        None => panic!("the conformance suite has no check named {name}"),
        Some(Outcome::Passed | Outcome::Unclaimed(_)) if known => {
            panic!(
                "{name} no longer fails but is listed as a known failure: remove it from known_failures"
            )
        }
        Some(Outcome::Passed) => {}
        Some(Outcome::Unclaimed(reason)) => eprintln!("UNCLAIMED {name}: {reason}"),
        Some(Outcome::Skipped(reason)) => eprintln!("SKIPPED {name}: {reason}"),
        Some(Outcome::Failed(message)) if known => {
            eprintln!("KNOWN FAILURE {name}: {message}");
        }
        Some(Outcome::Failed(message)) => panic!("{name} failed: {message}"),
    }
}

fn options_from_env() -> RunOptions {
    let mut options = RunOptions::default();
    if let Some(secs) = std::env::var("UVM_CONFORMANCE_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        options.timeout = Duration::from_secs(secs);
    }
    options
}
