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
