//! The test guest's boot files, as `cargo xtask guest` describes them in
//! `assets.json` (the lab exports its path as `UVM_GUEST_ASSETS`), and the
//! recommended kernel command line.
//!
//! Shared by `kvm-boot-check`, `kvm-hotplug-cycles`, the `shim` example, the
//! conformance CLI and the benchmarks.

use std::path::{Path, PathBuf};

/// The environment variable naming `assets.json`.
pub const ENV: &str = "UVM_GUEST_ASSETS";

/// Why the assets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    /// `UVM_GUEST_ASSETS` is not set.
    #[error("{ENV} is not set (run through `cargo xtask lab`, or pass the kernel and initrd)")]
    NotSet,
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON expected.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The boot files of the test guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAssets {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initramfs (with `/init`, the modules and the agent).
    pub initrd: PathBuf,
    /// The command line `assets.json` suggests (without `tsc_early_khz`).
    pub cmdline: String,
    /// The vsock port the guest agent listens on (`agent_port`, default
    /// [`uvm_guest_agent::DEFAULT_PORT`]).
    pub agent_port: u32,
}

impl GuestAssets {
    /// Reads `assets.json` at `path`.
    pub fn read(path: &Path) -> Result<Self, AssetsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AssetsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Reads the file `UVM_GUEST_ASSETS` names.
    pub fn from_env() -> Result<Self, AssetsError> {
        let path = std::env::var_os(ENV).ok_or(AssetsError::NotSet)?;
        Self::read(Path::new(&path))
    }

    /// Parses the text of `assets.json` (`path` is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, AssetsError> {
        let malformed = |reason: String| AssetsError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        let field = |name: &str| {
            json.get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("no string field {name:?}")))
        };
        let agent_port = match json.get("agent_port") {
            None => uvm_guest_agent::DEFAULT_PORT,
            Some(port) => port
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| malformed(format!("agent_port {port} is not a port number")))?,
        };
        Ok(GuestAssets {
            kernel: field("bzimage")?.into(),
            initrd: field("initramfs")?.into(),
            cmdline: field("cmdline")?,
            agent_port,
        })
    }

    /// The recommended command line: the suggested one plus `quiet` (the
    /// 8250 console costs one exit per byte, about 47 us each in the nested
    /// lab; panics and `/init`'s own lines still print),
    /// `tsc_early_khz=<host kHz>` (without it, TSC calibration under TCG
    /// hangs the boot at random) and `extra`.
    pub fn recommended_cmdline(&self, extra: &str) -> String {
        let mut cmdline = self.cmdline.clone();
        if !cmdline
            .split_whitespace()
            .any(|w| w == "quiet" || w.starts_with("loglevel="))
        {
            cmdline.push_str(" quiet");
        }
        if !cmdline.contains("tsc_early_khz=")
            && let Some(khz) = std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| host_khz(&c))
        {
            cmdline.push_str(&format!(" tsc_early_khz={khz}"));
        }
        if !extra.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(extra);
        }
        cmdline
    }
}

/// The host's TSC rate in kHz, from the first `cpu MHz` line of `/proc/cpuinfo` text.
pub fn host_khz(cpuinfo: &str) -> Option<u64> {
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
            Path::new("a.json"),
            r#"{"bzimage":"/k","initramfs":"/i","cmdline":"console=ttyS0","x":1}"#,
        )
        .unwrap();
        assert_eq!(a.kernel, PathBuf::from("/k"));
        assert_eq!(a.initrd, PathBuf::from("/i"));
        assert_eq!(a.agent_port, uvm_guest_agent::DEFAULT_PORT);
        let b = GuestAssets::parse(
            Path::new("a.json"),
            r#"{"bzimage":"/k","initramfs":"/i","cmdline":"","agent_port":2048}"#,
        )
        .unwrap();
        assert_eq!(b.agent_port, 2048);
        let c = a.recommended_cmdline("uvm.noagent=1");
        assert!(c.starts_with("console=ttyS0 quiet"), "{c}");
        assert!(c.ends_with(" uvm.noagent=1"), "{c}");
        assert!(matches!(
            GuestAssets::parse(Path::new("a.json"), r#"{"bzimage":"/k"}"#),
            Err(AssetsError::Malformed { .. })
        ));
    }

    #[test]
    fn reads_host_khz() {
        assert_eq!(host_khz("cpu MHz\t\t: 2999.998\n"), Some(2_999_998));
        assert_eq!(host_khz("flags: fpu\n"), None);
    }
}
