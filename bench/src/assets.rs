//! The guest assets (`UVM_GUEST_ASSETS`, written by `cargo xtask guest` or
//! the lab) and the kernel command line both VMMs boot with.

use crate::error::{BenchError, Result};

/// The console line the guest's `/init` prints once the agent is started.
pub const READY: &str = "UVM_GUEST_READY";

/// What a benchmark boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAssets {
    /// The bzImage.
    pub bzimage: String,
    /// The initramfs (uncompressed newc cpio).
    pub initramfs: String,
    /// The suggested command line (without `tsc_early_khz`).
    pub cmdline: String,
    /// The agent's vsock port.
    pub agent_port: u32,
}

impl GuestAssets {
    /// Parses the text of an `assets.json`.
    pub fn parse(text: &str) -> Result<Self> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BenchError::Assets(e.to_string()))?;
        let field = |name: &str| {
            json.get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| BenchError::Assets(format!("no {name}")))
        };
        let agent_port = json
            .get("agent_port")
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(uvm_guest_agent::DEFAULT_PORT);
        Ok(Self {
            bzimage: field("bzimage")?,
            initramfs: field("initramfs")?,
            cmdline: field("cmdline")?,
            agent_port,
        })
    }

    /// Reads the file named by `UVM_GUEST_ASSETS`.
    pub fn from_env() -> Result<Self> {
        let path = std::env::var("UVM_GUEST_ASSETS").map_err(|_| {
            BenchError::Assets("UVM_GUEST_ASSETS is not set (run through `cargo xtask lab`)".into())
        })?;
        let text =
            std::fs::read_to_string(&path).map_err(BenchError::io(format!("read {path}")))?;
        Self::parse(&text)
    }

    /// The command line both VMMs boot: the suggested one plus
    /// `tsc_early_khz` (TSC calibration can hang under TCG without it).
    pub fn boot_cmdline(&self) -> String {
        let mut cmdline = self.cmdline.clone();
        if let Some(khz) = tsc_khz() {
            cmdline.push_str(&format!(" tsc_early_khz={khz}"));
        }
        cmdline
    }
}

/// The CPU frequency in kHz from `/proc/cpuinfo` ("cpu MHz").
pub fn tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split_once(':')?
        .1
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assets_json() {
        let a = GuestAssets::parse(
            r#"{"bzimage":"/g/vmlinuz","initramfs":"/g/i.cpio","cmdline":"console=ttyS0","agent_port":2048}"#,
        )
        .unwrap();
        assert_eq!(a.bzimage, "/g/vmlinuz");
        assert_eq!(a.agent_port, 2048);
        assert!(a.boot_cmdline().starts_with("console=ttyS0"));
        assert!(GuestAssets::parse(r#"{"bzimage":"x"}"#).is_err());
    }
}
