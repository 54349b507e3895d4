//! [`GuestProbe`] on top of the agent's operations, and the mapping
//! decisions that go with it (SCSI addresses, which devices count, where
//! shares are mounted).

use std::time::Duration;

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{
    Error, GuestAction, GuestBlockDevice, GuestNic, GuestPmem, GuestProbe, GuestShare, MacAddress,
    Resource, Result, validate_port,
};

use super::errors::{AgentError, Subject};
use super::{AgentClient, Mode};
use crate::handlers::vsock::MAX_DIAL_TIMEOUT_MS;
use crate::hex;
use crate::protocol::{
    BlockDevicesReply, DataReply, DirReply, Empty, EntryKind, Interface, InterfacesReply, MAX_READ,
    Op, ScsiHost, ScsiHostsReply, SharesReply, UptimeReply, WritableReply, WriteReply,
};

/// Where the client mounts a virtio-fs share that is not mounted yet:
/// `<SHARE_MOUNT_DIR>/<tag>` (see [`share_mount_point`]).
pub const SHARE_MOUNT_DIR: &str = "/run/uvm/shares";

/// The driver name of virtio-scsi host adapters (`proc_name`).
const VIRTIO_SCSI: &str = "virtio_scsi";

/// The guest mount point of share `tag`: `<SHARE_MOUNT_DIR>/<tag>` when
/// the tag is a plain file name (`[A-Za-z0-9._-]`, not `.`/`..`),
/// otherwise `<SHARE_MOUNT_DIR>/x<hex of the tag>`.
pub fn share_mount_point(tag: &str) -> String {
    let plain = !tag.is_empty()
        && tag != "."
        && tag != ".."
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        format!("{SHARE_MOUNT_DIR}/{tag}")
    } else {
        format!("{SHARE_MOUNT_DIR}/x{}", hex::encode(tag.as_bytes()))
    }
}

/// Maps a SCSI address `H:C:T:L` to the contract's `(controller, lun)`.
///
/// The controller is the position of host `H` among the virtio-scsi host
/// adapters (all hosts if none reports its driver) ordered by PCI address,
/// then host number: a backend that gives controller `i` the `i`-th
/// virtio-scsi PCI function in slot order is read back exactly, whatever
/// order the guest probed them in and whatever other SCSI hosts exist.
/// The LUN is `L`. Addresses with a channel or target other than 0 (the
/// KVM backend uses target 0), or numbers over 255, have no contract
/// address: `None`.
pub fn scsi_address(scsi: &str, hosts: &[ScsiHost]) -> Option<(u8, u8)> {
    let numbers: Vec<u32> = scsi
        .split(':')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    let [host, channel, target, lun] = numbers.as_slice() else {
        return None;
    };
    if *channel != 0 || *target != 0 {
        debug!(
            scsi,
            "SCSI address with a channel or target: no (controller, lun)"
        );
        return None;
    }
    let virtio: Vec<&ScsiHost> = hosts
        .iter()
        .filter(|h| h.driver.as_deref() == Some(VIRTIO_SCSI))
        .collect();
    let mut controllers = if virtio.is_empty() {
        hosts.iter().collect()
    } else {
        virtio
    };
    // PCI addresses are fixed-width lower-case hex, so they sort as strings;
    // adapters without one come last.
    controllers
        .sort_by(|a, b| (a.pci.is_none(), &a.pci, a.host).cmp(&(b.pci.is_none(), &b.pci, b.host)));
    let controller = controllers.iter().position(|h| h.host == *host)?;
    Some((u8::try_from(controller).ok()?, u8::try_from(*lun).ok()?))
}

/// Whether `/sys/block/<name>` is a disk the contract reports: not a
/// pseudo device (loop, ram, zram, nbd, device-mapper, md) and not pmem
/// (reported by `pmem_devices`).
fn is_reported_disk(name: &str) -> bool {
    const SKIPPED: [&str; 7] = ["loop", "ram", "zram", "nbd", "dm-", "md", "pmem"];
    !SKIPPED.iter().any(|prefix| name.starts_with(prefix))
}

/// Whether an interface counts as up: carrier, or `operstate` up.
fn link_up(interface: &Interface) -> bool {
    interface.carrier == Some(true) || interface.operstate == "up"
}

/// Checks a path inside a share (relative, no `..`, not empty) and joins it.
fn share_file(mount: &str, path: &str) -> Result<String> {
    let bad = |reason: &str| Error::invalid_argument("path", format!("{path:?}: {reason}"));
    if path.is_empty() || path.starts_with('/') {
        return Err(bad("must be a relative path inside the share"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(bad("may not contain .."));
    }
    Ok(format!("{mount}/{path}"))
}

fn too_large(argument: &str, len: usize) -> Error {
    Error::invalid_argument(
        argument,
        format!("{len} bytes is over the agent's limit of {MAX_READ} bytes"),
    )
}

impl AgentClient {
    fn shared<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        subject: Subject,
    ) -> impl Future<Output = Result<T>> + Send + '_ {
        let mode = Mode::Shared {
            retry: super::repeatable(&op),
        };
        async move { self.request(op, &subject, mode).await }
    }

    /// The mount point of share `tag`, mounting it (read-write) if needed.
    async fn share_mount(&self, tag: &str) -> Result<String> {
        let subject = || Subject::Resource(Resource::VirtioFs, tag.to_owned());
        let shares: SharesReply = self.shared(Op::ListShares, Subject::None).await?;
        let Some(share) = shares.shares.into_iter().find(|s| s.tag == tag) else {
            return Err(Error::not_found(Resource::VirtioFs, tag));
        };
        if let Some(path) = share.mounted_at {
            return Ok(path);
        }
        let path = share_mount_point(tag);
        debug!(tag, path, "mounting share in the guest");
        let _: Empty = self
            .shared(
                Op::Mount {
                    tag: tag.to_owned(),
                    path: path.clone(),
                    read_only: false,
                },
                subject(),
            )
            .await?;
        Ok(path)
    }

    async fn writable(&self, path: &str) -> Result<bool> {
        let reply: WritableReply = self
            .shared(
                Op::Writable {
                    path: path.to_owned(),
                },
                Subject::None,
            )
            .await?;
        Ok(reply.writable)
    }

    /// The regular files under `dir`, relative and sorted (symbolic links
    /// are not followed).
    async fn files_under(&self, dir: &str) -> Result<Vec<String>> {
        let mut files = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(relative) = pending.pop() {
            let path = if relative.is_empty() {
                dir.to_owned()
            } else {
                format!("{dir}/{relative}")
            };
            let listing: DirReply = self.shared(Op::ListDir { path }, Subject::None).await?;
            for entry in listing.entries {
                let name = if relative.is_empty() {
                    entry.name
                } else {
                    format!("{relative}/{}", entry.name)
                };
                match entry.kind {
                    EntryKind::File => files.push(name),
                    EntryKind::Dir => pending.push(name),
                    EntryKind::Symlink | EntryKind::Other => {}
                }
            }
        }
        files.sort();
        Ok(files)
    }

    async fn list_interfaces(&self) -> Result<Vec<Interface>> {
        let reply: InterfacesReply = self.shared(Op::ListNet, Subject::None).await?;
        Ok(reply.interfaces)
    }
}

fn decode(op: &str, data: &str) -> Result<Vec<u8>> {
    hex::decode(data).map_err(|e| {
        AgentError::BadResponse {
            op: op.to_owned(),
            reason: format!("data is not hex: {e}"),
        }
        .into_api()
    })
}

#[async_trait]
impl GuestProbe for AgentClient {
    async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>> {
        let reply: BlockDevicesReply = self.shared(Op::ListBlock, Subject::None).await?;
        let needs_hosts = reply.devices.iter().any(|d| d.scsi.is_some());
        let hosts = if needs_hosts {
            let hosts: ScsiHostsReply = self.shared(Op::ListScsiHosts, Subject::None).await?;
            hosts.hosts
        } else {
            Vec::new()
        };
        Ok(reply
            .devices
            .into_iter()
            .filter(|d| is_reported_disk(&d.name))
            .map(|d| GuestBlockDevice {
                scsi_address: d.scsi.as_deref().and_then(|s| scsi_address(s, &hosts)),
                name: d.name,
                size_bytes: d.size_bytes,
                read_only: d.read_only,
            })
            .collect())
    }

    async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let mut done = 0u64;
        while done < len {
            let chunk = (len - done).min(MAX_READ);
            let at = offset
                .checked_add(done)
                .ok_or_else(|| Error::invalid_argument("offset", "offset + len overflows"))?;
            let reply: DataReply = self
                .shared(
                    Op::Read {
                        device: name.to_owned(),
                        offset: at,
                        len: chunk,
                    },
                    Subject::Argument("name"),
                )
                .await?;
            let bytes = decode("read", &reply.data)?;
            let got = bytes.len() as u64;
            data.extend_from_slice(&bytes);
            if got < chunk {
                return Err(Error::invalid_argument(
                    "offset",
                    format!(
                        "{len} bytes at {offset} run past the end of {name} (only {} readable)",
                        done + got
                    ),
                ));
            }
            done += got;
        }
        Ok(data)
    }

    async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        let chunk_len = usize::try_from(MAX_READ).unwrap_or(usize::MAX);
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(chunk_len).collect()
        };
        let last = chunks.len().saturating_sub(1);
        let mut at = offset;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let _: WriteReply = self
                .shared(
                    Op::Write {
                        device: name.to_owned(),
                        offset: at,
                        data: hex::encode(chunk),
                        sync: i == last,
                    },
                    Subject::Argument("name"),
                )
                .await?;
            at = at.saturating_add(chunk.len() as u64);
        }
        Ok(())
    }

    async fn network_interfaces(&self) -> Result<Vec<GuestNic>> {
        let mut interfaces = self.list_interfaces().await?;
        // An interface nobody set up has no carrier to read: bring NICs up
        // (the guest's /init only does it for lo), then look again.
        let down: Vec<String> = interfaces
            .iter()
            .filter(|i| i.admin_up == Some(false) && i.mac.parse::<MacAddress>().is_ok())
            .map(|i| i.name.clone())
            .collect();
        for interface in &down {
            debug!(interface, "setting guest interface up");
            let _: Empty = self
                .shared(
                    Op::SetLink {
                        interface: interface.clone(),
                        up: true,
                    },
                    Subject::None,
                )
                .await?;
        }
        if !down.is_empty() {
            interfaces = self.list_interfaces().await?;
        }
        Ok(interfaces
            .into_iter()
            .filter_map(|i| {
                // lo and other non-Ethernet interfaces have no usable MAC.
                let mac = i.mac.parse::<MacAddress>().ok()?;
                Some(GuestNic {
                    link_up: link_up(&i),
                    name: i.name,
                    mac,
                })
            })
            .collect())
    }

    async fn pmem_devices(&self) -> Result<Vec<GuestPmem>> {
        let reply: BlockDevicesReply = self.shared(Op::ListPmem, Subject::None).await?;
        Ok(reply
            .devices
            .into_iter()
            .map(|d| GuestPmem {
                name: d.name,
                size_bytes: d.size_bytes,
            })
            .collect())
    }

    async fn shares(&self) -> Result<Vec<GuestShare>> {
        let reply: SharesReply = self.shared(Op::ListShares, Subject::None).await?;
        let mut shares = Vec::new();
        for share in reply.shares {
            let mount = self.share_mount(&share.tag).await?;
            let read_only = !self.writable(&mount).await?;
            shares.push(GuestShare {
                tag: share.tag,
                read_only,
            });
        }
        Ok(shares)
    }

    async fn list_share(&self, tag: &str) -> Result<Vec<String>> {
        let mount = self.share_mount(tag).await?;
        self.files_under(&mount).await
    }

    async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>> {
        let mount = self.share_mount(tag).await?;
        let file = share_file(&mount, path)?;
        let mut data = Vec::new();
        loop {
            let reply: DataReply = self
                .shared(
                    Op::ReadFile {
                        path: file.clone(),
                        offset: data.len() as u64,
                        len: Some(MAX_READ),
                    },
                    Subject::None,
                )
                .await?;
            let bytes = decode("read_file", &reply.data)?;
            let short = (bytes.len() as u64) < MAX_READ;
            data.extend_from_slice(&bytes);
            if short {
                return Ok(data);
            }
        }
    }

    async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()> {
        if data.len() as u64 > MAX_READ {
            return Err(too_large("data", data.len()));
        }
        let mount = self.share_mount(tag).await?;
        let file = share_file(&mount, path)?;
        if !self.writable(&mount).await? {
            return Err(Error::io(
                format!("writing {path} in share {tag}"),
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("share {tag} is read-only in the guest"),
                ),
            ));
        }
        let _: WriteReply = self
            .shared(
                Op::WriteFile {
                    path: file,
                    data: hex::encode(data),
                    sync: true,
                },
                Subject::None,
            )
            .await?;
        Ok(())
    }

    async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        validate_port(port)?;
        if payload.len() as u64 > MAX_READ {
            return Err(too_large("payload", payload.len()));
        }
        // The agent gives up a little before we do, so its answer (a
        // timeout error) arrives instead of ours.
        let budget = self.timeout.saturating_sub(Duration::from_secs(1));
        let timeout_ms = u64::try_from(budget.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_DIAL_TIMEOUT_MS);
        let op = Op::VsockDial {
            port,
            data: hex::encode(payload),
            timeout_ms,
        };
        let reply: DataReply = self.request(op, &Subject::None, Mode::Dedicated).await?;
        decode("vsock_dial", &reply.data)
    }

    async fn serve_echo(&self, port: u32) -> Result<()> {
        validate_port(port)?;
        let subject = Subject::Resource(Resource::VmSocket, port.to_string());
        let mode = Mode::Shared { retry: false };
        let _: Empty = self.request(Op::VsockEcho { port }, &subject, mode).await?;
        Ok(())
    }

    async fn uptime(&self) -> Result<Duration> {
        let reply: UptimeReply = self.shared(Op::Uptime, Subject::None).await?;
        Duration::try_from_secs_f64(reply.uptime_secs).map_err(|e| {
            AgentError::BadResponse {
                op: "uptime".to_owned(),
                reason: format!("uptime {}: {e}", reply.uptime_secs),
            }
            .into_api()
        })
    }

    async fn trigger(&self, action: GuestAction) -> Result<()> {
        let op = match action {
            GuestAction::PowerOff => Op::PowerOff,
            GuestAction::Reboot => Op::Reboot,
            GuestAction::Panic => Op::Panic,
            GuestAction::Crash => {
                return Err(Error::invalid_argument(
                    "action",
                    "the agent cannot crash the guest: a triple fault cannot be caused from user space (use Panic for a kernel panic)",
                ));
            }
        };
        debug!(?action, "asking the guest agent to act");
        let _: Empty = self.request(op, &Subject::None, Mode::Last).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(host: u32, driver: Option<&str>, pci: Option<&str>) -> ScsiHost {
        ScsiHost {
            host,
            driver: driver.map(str::to_owned),
            pci: pci.map(str::to_owned),
        }
    }

    #[test]
    fn scsi_controllers_follow_pci_order_of_virtio_scsi_hosts() {
        let hosts = [
            host(0, Some("ata_piix"), Some("0000:00:01.1")),
            host(1, Some("virtio_scsi"), Some("0000:00:05.0")),
            host(2, Some("virtio_scsi"), Some("0000:00:04.0")),
        ];
        assert_eq!(scsi_address("2:0:0:3", &hosts), Some((0, 3)));
        assert_eq!(scsi_address("1:0:0:0", &hosts), Some((1, 0)));
        assert_eq!(scsi_address("0:0:0:0", &hosts), None);
        assert_eq!(scsi_address("1:0:1:0", &hosts), None);
        assert_eq!(scsi_address("1:0:0:256", &hosts), None);
        assert_eq!(scsi_address("1:0:0", &hosts), None);
        assert_eq!(scsi_address("9:0:0:0", &hosts), None);
        // No driver information: every host counts, by PCI address then number.
        let hosts = [host(3, None, None), host(1, None, Some("0000:00:07.0"))];
        assert_eq!(scsi_address("1:0:0:1", &hosts), Some((0, 1)));
        assert_eq!(scsi_address("3:0:0:1", &hosts), Some((1, 1)));
    }

    #[test]
    fn mount_points_and_share_paths() {
        assert_eq!(share_mount_point("vfs1"), "/run/uvm/shares/vfs1");
        assert_eq!(share_mount_point("a b"), "/run/uvm/shares/x612062");
        assert_eq!(share_mount_point(".."), "/run/uvm/shares/x2e2e");
        assert_eq!(share_file("/m", "a/b.txt").unwrap(), "/m/a/b.txt");
        for bad in ["", "/etc/passwd", "a/../../b", ".."] {
            assert!(share_file("/m", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pseudo_block_devices_are_skipped() {
        for name in ["sda", "vda", "sdaa", "nvme0n1"] {
            assert!(is_reported_disk(name), "{name}");
        }
        for name in ["loop0", "ram3", "zram0", "nbd1", "dm-0", "md127", "pmem0"] {
            assert!(!is_reported_disk(name), "{name}");
        }
    }
}
