//! The common frame of the lab binaries that boot the test guest: a
//! current-thread tokio runtime and the guest assets from `UVM_GUEST_ASSETS`.

use std::future::Future;
use std::process::ExitCode;

use crate::guest_assets::{AssetsError, GuestAssets};

/// Reads the guest assets and runs `body` with them on a current-thread
/// runtime, returning its exit code. When the runtime cannot be built or
/// the assets cannot be read, prints `tool: <why>` to stderr and returns a
/// failure without running `body`.
pub fn run_with_guest_assets<F, Fut>(tool: &str, body: F) -> ExitCode
where
    F: FnOnce(GuestAssets) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    run_with(tool, GuestAssets::from_env, body)
}

/// The command line of a tool that takes nothing or `FLAG N`: `N`, or
/// `default` without arguments. Anything else is a usage error, said on
/// stderr as `tool: ...`.
pub fn count_argument(
    tool: &str,
    flag: &str,
    default: u32,
    args: &[String],
) -> Result<u32, ExitCode> {
    match args {
        [] => Ok(default),
        [given, n] if given == flag => n.parse().map_err(|e| {
            eprintln!("{tool}: {flag} {n}: {e}");
            ExitCode::FAILURE
        }),
        other => {
            eprintln!("usage: {tool} [{flag} N] (got {other:?})");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The exit code of a tool whose run answered `result`: success for
/// `Ok(true)`, failure for `Ok(false)` and for an error (said on stderr).
pub fn exit_code(tool: &str, result: Result<bool, String>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{tool}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// [`run_with_guest_assets`] with the assets from `assets` (for tests).
fn run_with<A, F, Fut>(tool: &str, assets: A, body: F) -> ExitCode
where
    A: FnOnce() -> Result<GuestAssets, AssetsError>,
    F: FnOnce(GuestAssets) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{tool}: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let assets = match assets() {
        Ok(assets) => assets,
        Err(e) => {
            eprintln!("{tool}: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(body(assets))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_count_argument_is_the_default_the_number_or_a_usage_error() {
        assert_eq!(count_argument("t", "--n", 7, &[]), Ok(7));
        assert_eq!(
            count_argument("t", "--n", 7, &strings(&["--n", "3"])),
            Ok(3)
        );
        assert!(count_argument("t", "--n", 7, &strings(&["--n", "x"])).is_err());
        assert!(count_argument("t", "--n", 7, &strings(&["--m", "3"])).is_err());
        assert!(count_argument("t", "--n", 7, &strings(&["--n"])).is_err());
    }

    #[test]
    fn runs_the_body_with_the_assets_and_returns_its_code() {
        let assets = GuestAssets {
            kernel: PathBuf::from("/k"),
            initrd: PathBuf::from("/i"),
            cmdline: String::new(),
            agent_port: 1024,
        };
        let code = run_with(
            "t",
            || Ok(assets),
            |a| async move {
                tokio::task::yield_now().await;
                if a.kernel == std::path::Path::new("/k") {
                    ExitCode::from(7)
                } else {
                    ExitCode::SUCCESS
                }
            },
        );
        assert_eq!(code, ExitCode::from(7));
    }

    #[test]
    fn fails_without_running_the_body_when_the_assets_are_missing() {
        let mut ran = false;
        let code = run_with(
            "t",
            || Err(AssetsError::NotSet),
            |_| {
                ran = true;
                async { ExitCode::SUCCESS }
            },
        );
        assert_eq!(code, ExitCode::FAILURE);
        assert!(!ran);
    }
}
