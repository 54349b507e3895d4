//! Block devices: `/sys/block` listings and raw reads and writes of `/dev/<name>`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{HandlerError, HandlerResult, check_name, pci_function, read_trimmed};
use crate::hex;
use crate::protocol::{BlockDevice, BlockDevicesReply, DataReply, MAX_READ, WriteReply};

/// Parses a SCSI address (`host:channel:target:lun`, four decimal numbers).
pub fn parse_scsi_address(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let all_numbers = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (parts.len() == 4 && all_numbers).then(|| text.to_owned())
}

/// The SCSI address of `/sys/block/<name>` (the name of the directory its
/// `device` link points to, when that is an `H:C:T:L` address) and the PCI
/// function on that link's path.
fn device_location(dir: &Path) -> (Option<String>, Option<String>) {
    let Ok(target) = std::fs::read_link(dir.join("device")) else {
        return (None, None);
    };
    let scsi = target
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(parse_scsi_address);
    (scsi, pci_function(&target))
}

fn describe(dir: &Path, name: &str) -> HandlerResult<BlockDevice> {
    let sectors: u64 = read_trimmed(&dir.join("size"))?.parse().map_err(|e| {
        HandlerError::InvalidArgument(format!("{}/size is not a number: {e}", dir.display()))
    })?;
    let read_only = read_trimmed(&dir.join("ro"))
        .map(|ro| ro == "1")
        .unwrap_or(false);
    let (scsi, pci) = device_location(dir);
    Ok(BlockDevice {
        name: name.to_owned(),
        size_bytes: sectors.saturating_mul(512),
        read_only,
        scsi,
        pci,
    })
}

fn list_where(root: &Path, keep: impl Fn(&str) -> bool) -> HandlerResult<BlockDevicesReply> {
    let dir = root.join("sys/block");
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
    let mut devices = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if keep(&name) {
            devices.push(describe(&entry.path(), &name)?);
        }
    }
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(BlockDevicesReply { devices })
}

/// `list_block`: every entry of `/sys/block` with size, read-only flag and
/// SCSI address.
pub fn list_block(root: &Path) -> HandlerResult<BlockDevicesReply> {
    list_where(root, |_| true)
}

/// `list_pmem`: the `pmem*` entries of `/sys/block`.
pub fn list_pmem(root: &Path) -> HandlerResult<BlockDevicesReply> {
    list_where(root, |name| name.starts_with("pmem"))
}

fn device_path(root: &Path, device: &str) -> HandlerResult<std::path::PathBuf> {
    check_name("device", device)?;
    Ok(root.join("dev").join(device))
}

/// Drops cached pages of the range so a read sees what the host wrote
/// behind the guest's back (best effort; ignored where unsupported).
fn drop_cache(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is
    // owned by `file`, which is alive for the call.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// Reads up to `len` bytes at `offset` from an open file (short at EOF).
pub fn read_at(file: &mut File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(len).read_to_end(&mut data)?;
    Ok(data)
}

/// `read`: `len` bytes at `offset` of `/dev/<device>`.
pub fn read(root: &Path, device: &str, offset: u64, len: u64) -> HandlerResult<DataReply> {
    if len > MAX_READ {
        return Err(HandlerError::InvalidArgument(format!(
            "len {len} is over the limit of {MAX_READ} bytes"
        )));
    }
    let path = device_path(root, device)?;
    let mut file =
        File::open(&path).map_err(|e| HandlerError::io(format!("open {}", path.display()), e))?;
    drop_cache(&file, offset, len);
    let data = read_at(&mut file, offset, len)
        .map_err(|e| HandlerError::io(format!("read {}", path.display()), e))?;
    Ok(DataReply {
        len: data.len() as u64,
        data: hex::encode(&data),
    })
}

/// `write`: hex `data` at `offset` of `/dev/<device>`, fsynced if `sync`.
pub fn write(
    root: &Path,
    device: &str,
    offset: u64,
    data: &str,
    sync: bool,
) -> HandlerResult<WriteReply> {
    let bytes = hex::decode(data).map_err(|e| HandlerError::InvalidArgument(e.to_string()))?;
    let path = device_path(root, device)?;
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| HandlerError::io(format!("open {}", path.display()), e))?;
    let context = || format!("write {}", path.display());
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| HandlerError::io(context(), e))?;
    file.write_all(&bytes)
        .map_err(|e| HandlerError::io(context(), e))?;
    if sync {
        file.sync_all()
            .map_err(|e| HandlerError::io(format!("fsync {}", path.display()), e))?;
    }
    Ok(WriteReply {
        written: bytes.len() as u64,
        synced: sync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use std::fs;

    /// A fake root with sda (SCSI 0:0:1:2), vda (virtio, read-only) and pmem0.
    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let devices = r.join("sys/devices/pci0000:00/0000:00:03.0/virtio1/host0/target0:0:1");
        fs::create_dir_all(devices.join("0:0:1:2")).unwrap();
        fs::create_dir_all(r.join("sys/devices/pci0000:00/0000:00:04.0/virtio2")).unwrap();
        for (name, size, ro) in [
            ("sda", "2048", "0"),
            ("vda", "8", "1"),
            ("pmem0", "4096", "0"),
        ] {
            let dir = r.join("sys/block").join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("size"), format!("{size}\n")).unwrap();
            fs::write(dir.join("ro"), format!("{ro}\n")).unwrap();
        }
        std::os::unix::fs::symlink(devices.join("0:0:1:2"), r.join("sys/block/sda/device"))
            .unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:04.0/virtio2",
            r.join("sys/block/vda/device"),
        )
        .unwrap();
        fs::create_dir_all(r.join("dev")).unwrap();
        fs::write(r.join("dev/sda"), vec![0u8; 4096]).unwrap();
        root
    }

    #[test]
    fn lists_block_devices_with_scsi_addresses() {
        let root = fake_root();
        let reply = list_block(root.path()).unwrap();
        let summary: Vec<_> = reply
            .devices
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.size_bytes,
                    d.read_only,
                    d.scsi.as_deref(),
                    d.pci.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("pmem0", 4096 * 512, false, None, None),
                (
                    "sda",
                    2048 * 512,
                    false,
                    Some("0:0:1:2"),
                    Some("0000:00:03.0")
                ),
                ("vda", 8 * 512, true, None, Some("0000:00:04.0")),
            ]
        );
    }

    #[test]
    fn lists_only_pmem() {
        let root = fake_root();
        let reply = list_pmem(root.path()).unwrap();
        assert_eq!(reply.devices.len(), 1);
        assert_eq!(reply.devices[0].name, "pmem0");
    }

    #[test]
    fn missing_sys_block_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let error = list_block(root.path()).unwrap_err();
        assert_eq!(error.to_body().kind, ErrorKind::NotFound);
    }

    #[test]
    fn write_then_read_back() {
        let root = fake_root();
        let reply = write(root.path(), "sda", 510, "55aa", true).unwrap();
        assert_eq!(
            reply,
            WriteReply {
                written: 2,
                synced: true
            }
        );
        let data = read(root.path(), "sda", 508, 6).unwrap();
        assert_eq!(data.data, "000055aa0000");
        assert_eq!(data.len, 6);
        // A read past the end is short, not an error.
        let data = read(root.path(), "sda", 4094, 16).unwrap();
        assert_eq!(data.len, 2);
    }

    #[test]
    fn read_errors() {
        let root = fake_root();
        let kind = |e: HandlerError| e.to_body().kind;
        assert_eq!(
            kind(read(root.path(), "sdz", 0, 1).unwrap_err()),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(read(root.path(), "../etc", 0, 1).unwrap_err()),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(read(root.path(), "sda", 0, MAX_READ + 1).unwrap_err()),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(write(root.path(), "sda", 0, "zz", false).unwrap_err()),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn scsi_addresses_parse() {
        assert_eq!(parse_scsi_address("0:0:1:2").as_deref(), Some("0:0:1:2"));
        assert_eq!(parse_scsi_address("virtio2"), None);
        assert_eq!(parse_scsi_address("0:0:1"), None);
        assert_eq!(parse_scsi_address("0::1:2"), None);
    }
}
