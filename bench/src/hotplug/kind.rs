//! The device kinds measured, and how the guest shows one run's device
//! ([`Mark`]).

use std::fmt;
use std::str::FromStr;

use uvm_api::{GuestProbe, MacAddress};

use crate::error::{BenchError, Result};

/// A kind of hot-added device.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A disk at a new LUN of a virtio-scsi controller that was there at boot.
    Scsi,
    /// A virtio-net NIC on a tap.
    Nic,
    /// A virtio-fs share served by `virtiofsd`.
    Share,
    /// A virtio-pmem device backed by an image file. Measured last: QEMU
    /// cannot unplug these, and each one left behind is one more memory
    /// region a vhost-user device (a share) would have to map.
    Pmem,
}

impl Kind {
    /// Every kind, in the order they are measured.
    pub const ALL: [Kind; 4] = [Kind::Scsi, Kind::Nic, Kind::Share, Kind::Pmem];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Scsi => "scsi",
            Kind::Nic => "nic",
            Kind::Pmem => "pmem",
            Kind::Share => "share",
        }
    }

    /// Parses a comma-separated list (`scsi,nic`); keeps the order of
    /// [`Kind::ALL`] and drops repeats.
    pub fn parse_list(text: &str) -> Result<Vec<Kind>> {
        let mut kinds = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Kind>>>()?;
        if kinds.is_empty() {
            return Err(BenchError::Usage("--only needs at least one kind".into()));
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| BenchError::Usage(format!("unknown kind {s:?}: scsi, nic, pmem, share")))
    }
}

/// What identifies one run's device in the guest's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// A block device at SCSI (controller, LUN).
    ScsiLun(u8, u8),
    /// A network interface with this MAC.
    Mac(MacAddress),
    /// A pmem device of this size in bytes (sizes differ per run).
    PmemSize(u64),
    /// A share with this tag.
    Tag(String),
}

impl Mark {
    /// Asks `probe` once whether the guest shows the device now.
    pub async fn seen_by(&self, probe: &dyn GuestProbe) -> uvm_api::Result<bool> {
        Ok(match self {
            Mark::ScsiLun(controller, lun) => probe
                .block_devices()
                .await?
                .iter()
                .any(|d| d.scsi_address == Some((*controller, *lun))),
            Mark::Mac(mac) => probe
                .network_interfaces()
                .await?
                .iter()
                .any(|n| n.mac == *mac),
            Mark::PmemSize(size) => probe
                .pmem_devices()
                .await?
                .iter()
                .any(|p| p.size_bytes == *size),
            Mark::Tag(tag) => probe.shares().await?.iter().any(|s| s.tag == *tag),
        })
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mark::ScsiLun(c, l) => write!(f, "SCSI disk {c}:{l}"),
            Mark::Mac(mac) => write!(f, "NIC {mac}"),
            Mark::PmemSize(size) => write!(f, "pmem device of {} MiB", size >> 20),
            Mark::Tag(tag) => write!(f, "share {tag:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kind_lists() {
        assert_eq!(
            Kind::parse_list("share,scsi,nic,scsi").unwrap(),
            vec![Kind::Scsi, Kind::Nic, Kind::Share]
        );
        assert_eq!(
            Kind::parse_list("pmem,share").unwrap(),
            vec![Kind::Share, Kind::Pmem]
        );
        assert_eq!(Kind::parse_list("pmem").unwrap(), vec![Kind::Pmem]);
        assert!(Kind::parse_list("").is_err());
        assert!(Kind::parse_list("scsi,disk").is_err());
        assert_eq!(Kind::Nic.to_string(), "nic");
    }

    #[test]
    fn marks_describe_themselves() {
        assert_eq!(Mark::ScsiLun(0, 3).to_string(), "SCSI disk 0:3");
        assert_eq!(Mark::PmemSize(4 << 20).to_string(), "pmem device of 4 MiB");
    }
}
