//! A view from inside the guest, so tests can check what the guest really sees.
//!
//! A backend provides it through [`crate::Uvm::guest_probe`]: the mock from its
//! simulated guest, a real backend through an agent running in the guest.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mac::MacAddress;

/// A block device as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestBlockDevice {
    /// Kernel name (for example `sda`).
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SCSI (controller, LUN), for SCSI disks.
    pub scsi_address: Option<(u8, u8)>,
    /// Whether the guest sees it read-only.
    pub read_only: bool,
}

/// A network interface as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNic {
    /// Kernel name (for example `eth0`).
    pub name: String,
    /// Its MAC address.
    pub mac: MacAddress,
    /// Whether the link is up.
    pub link_up: bool,
}

/// A persistent-memory device as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPmem {
    /// Kernel name (for example `pmem0`).
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// A shared folder the guest can mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestShare {
    /// Its tag or name.
    pub tag: String,
    /// Whether the guest sees it read-only.
    pub read_only: bool,
}

/// Something the guest can be made to do, to test exit reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestAction {
    /// Power off (expected reason: `Shutdown`).
    PowerOff,
    /// Reboot (expected reason: `Reboot`).
    Reboot,
    /// Kernel panic (expected reason: `GuestPanic`).
    Panic,
    /// Triple fault (expected reason: `Crash`).
    Crash,
}

/// Looks inside a running guest.
#[async_trait]
pub trait GuestProbe: Send + Sync {
    /// Block devices the guest sees now.
    async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>>;

    /// Reads `len` bytes at `offset` of block device `name`.
    async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// Writes `data` at `offset` of block device `name` and syncs. Fails on a read-only device.
    async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()>;

    /// Network interfaces the guest sees now.
    async fn network_interfaces(&self) -> Result<Vec<GuestNic>>;

    /// Persistent-memory devices the guest sees now.
    async fn pmem_devices(&self) -> Result<Vec<GuestPmem>>;

    /// Shared folders the guest can mount now.
    async fn shares(&self) -> Result<Vec<GuestShare>>;

    /// File names visible in share `tag` (relative paths, sorted).
    async fn list_share(&self, tag: &str) -> Result<Vec<String>>;

    /// Reads file `path` of share `tag`.
    async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>>;

    /// Writes file `path` of share `tag`. Fails on a read-only share.
    async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()>;

    /// From the guest, connects to host port `port`, sends `payload`, half-closes,
    /// and returns everything the host sent back before closing.
    async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>>;

    /// Starts a guest listener on `port` that echoes what each connection sends.
    async fn serve_echo(&self, port: u32) -> Result<()>;

    /// Time the guest has run since it booted, as the guest's own clock
    /// counts it: time spent paused is not included.
    async fn uptime(&self) -> Result<Duration>;

    /// Makes the guest do `action`; the VM then exits with the matching reason.
    async fn trigger(&self, action: GuestAction) -> Result<()>;
}
