//! The guest assets both VMMs boot (read with uvm-tools'
//! [`GuestAssets`], from `UVM_GUEST_ASSETS`) and the command line the
//! benchmark gives them.

pub use uvm_tools::guest_assets::GuestAssets;
use uvm_tools::guest_assets::host_khz;

use crate::error::{BenchError, Result};

/// The console line the guest's `/init` prints once the agent is started.
pub const READY: &str = "UVM_GUEST_READY";

/// Reads the assets named by `UVM_GUEST_ASSETS`.
pub fn from_env() -> Result<GuestAssets> {
    GuestAssets::from_env().map_err(|e| BenchError::Assets(e.to_string()))
}

/// The command line both VMMs boot: the suggested one plus
/// `tsc_early_khz` (TSC calibration can hang under TCG without it). Unlike
/// [`GuestAssets::recommended_cmdline`] it adds no `quiet`, so the figures
/// stay comparable with earlier runs.
pub fn boot_cmdline(assets: &GuestAssets) -> String {
    let khz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| host_khz(&c));
    with_tsc_khz(&assets.cmdline, khz)
}

fn with_tsc_khz(cmdline: &str, khz: Option<u64>) -> String {
    match khz {
        Some(khz) => format!("{cmdline} tsc_early_khz={khz}"),
        None => cmdline.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_cmdline_adds_only_the_tsc_rate() {
        assert_eq!(
            with_tsc_khz("console=ttyS0", Some(2_000_000)),
            "console=ttyS0 tsc_early_khz=2000000"
        );
        assert_eq!(with_tsc_khz("console=ttyS0", None), "console=ttyS0");
    }
}
