//! virtio-fs shares: which tags the guest has, where they are mounted, and
//! whether a path is writable.

use std::path::Path;

use super::virtio_pci::{self, VirtioPciError};
use super::{HandlerError, HandlerResult, guest_path, read_trimmed};
use crate::protocol::{Share, SharesReply, WritableReply};
use crate::system::System;

use super::fs::VIRTIOFS;

/// Undoes the octal escapes of `/proc/mounts` fields (`\040` is a space).
pub fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The virtio-fs mounts of `/proc/mounts` text, as (tag, mount point).
pub fn virtiofs_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == VIRTIOFS)
                .then(|| (unescape_mount_field(source), unescape_mount_field(target)))
        })
        .collect()
}

/// Length of the tag field of `struct virtio_fs_config`.
pub const TAG_LEN: usize = 36;
/// Size of `struct virtio_fs_config` (the tag and `num_request_queues`).
pub const CONFIG_LEN: usize = 40;

/// Why a virtio-fs device's tag could not be read from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// The device configuration could not be read.
    #[error(transparent)]
    Device(#[from] VirtioPciError),
    /// The tag field is empty.
    #[error("the tag is empty")]
    Empty,
    /// The tag is not UTF-8.
    #[error("the tag is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
}

/// The tag in a virtio-fs device configuration: the bytes of the tag field
/// up to the first NUL (all [`TAG_LEN`] when there is none).
pub fn parse_tag(config: &[u8]) -> Result<String, TagError> {
    let field = config.get(..TAG_LEN).unwrap_or(config);
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    match std::str::from_utf8(&field[..end])? {
        "" => Err(TagError::Empty),
        tag => Ok(tag.to_owned()),
    }
}

/// The tag of the virtio-fs device on PCI function `pci_dir`, read from
/// its device configuration in its memory BAR.
pub fn pci_tag(pci_dir: &Path) -> Result<String, TagError> {
    parse_tag(&virtio_pci::read_device_cfg(pci_dir, CONFIG_LEN)?)
}

/// A tag of `/sys/fs/virtiofs` with the virtio device (`virtioN`) its
/// `device` link names, if it has one.
struct SysfsTag {
    tag: String,
    device: Option<String>,
}

/// The tags of `/sys/fs/virtiofs/*/tag` (kernels since 6.9); none when
/// the directory is missing.
fn sysfs_tags(root: &Path) -> HandlerResult<Vec<SysfsTag>> {
    let dir = root.join("sys/fs/virtiofs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HandlerError::io(format!("read_dir {}", dir.display()), e)),
    };
    let mut tags = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
        // A device being removed can lose its tag file under us: skip it.
        let Ok(tag) = read_trimmed(&entry.path().join("tag")) else {
            continue;
        };
        let device = std::fs::read_link(entry.path().join("device"))
            .ok()
            .and_then(|target| Some(target.file_name()?.to_str()?.to_owned()));
        tags.push(SysfsTag { tag, device });
    }
    Ok(tags)
}

/// The tags of the virtio-fs devices on PCI functions, read from their
/// device configuration, leaving out the virtio devices in `known`. A
/// device whose tag cannot be read is skipped (and reported on stderr).
fn pci_tags(root: &Path, known: &[String]) -> Vec<String> {
    let devices = match virtio_pci::devices(root, virtio_pci::VIRTIO_ID_FS) {
        Ok(devices) => devices,
        Err(e) => {
            eprintln!("uvm-agent: list_shares: virtio devices: {e}");
            return Vec::new();
        }
    };
    devices
        .into_iter()
        .filter(|device| !known.contains(&device.name))
        .filter_map(|device| match pci_tag(&device.pci_dir) {
            Ok(tag) => Some(tag),
            Err(e) => {
                eprintln!(
                    "uvm-agent: list_shares: skipping virtio-fs device {} ({}): {e}",
                    device.name,
                    device.pci_dir.display()
                );
                None
            }
        })
        .collect()
}

/// `list_shares`: the virtio-fs tags, each with its first virtio-fs mount
/// point from `/proc/mounts`, sorted and without duplicates. Tags come
/// from `/sys/fs/virtiofs/*/tag` where the kernel has it, and for every
/// other virtio-fs device on a PCI function (all of them on older kernels)
/// from the device configuration in its BAR. None without any device.
pub fn list_shares(root: &Path) -> HandlerResult<SharesReply> {
    let sysfs = sysfs_tags(root)?;
    let known: Vec<String> = sysfs.iter().filter_map(|t| t.device.clone()).collect();
    let mut tags: Vec<String> = sysfs.into_iter().map(|t| t.tag).collect();
    tags.extend(pci_tags(root, &known));
    tags.sort();
    tags.dedup();
    let mounts = std::fs::read_to_string(root.join("proc/mounts"))
        .map(|text| virtiofs_mounts(&text))
        .unwrap_or_default();
    let shares = tags
        .into_iter()
        .map(|tag| {
            // A share removed and added again leaves its old mount behind,
            // dead (ENOTCONN): only a mount that answers counts.
            let mounted_at = mounts
                .iter()
                .filter(|(source, _)| *source == tag)
                .find(|(_, target)| mount_answers(root, target))
                .map(|(_, target)| target.clone());
            Share { tag, mounted_at }
        })
        .collect();
    Ok(SharesReply { shares })
}

/// Whether the mount at `target` (a guest path) answers a `stat`.
fn mount_answers(root: &Path, target: &str) -> bool {
    std::fs::metadata(root.join(target.trim_start_matches('/'))).is_ok()
}

/// `writable`: whether `path` exists and may be written (through
/// [`System::writable`], so tests can fake a read-only mount).
pub fn writable(root: &Path, system: &dyn System, path: &str) -> HandlerResult<WritableReply> {
    let full = guest_path(root, path)?;
    let writable = system
        .writable(&full)
        .map_err(|e| HandlerError::io(format!("access {path}"), e))?;
    Ok(WritableReply { writable })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use crate::system::fake::FakeSystem;
    use std::fs;

    #[test]
    fn a_mount_that_does_not_answer_does_not_count() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let dir = r.join("sys/fs/virtiofs/0");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("tag"), "vfs1\n").unwrap();
        fs::create_dir_all(r.join("proc")).unwrap();
        fs::write(
            r.join("proc/mounts"),
            "vfs1 /dead virtiofs rw 0 0\nvfs1 /live virtiofs rw 0 0\n",
        )
        .unwrap();
        fs::create_dir_all(r.join("live")).unwrap();
        let reply = list_shares(r).unwrap();
        assert_eq!(reply.shares[0].mounted_at.as_deref(), Some("/live"));
        fs::remove_dir(r.join("live")).unwrap();
        assert_eq!(list_shares(r).unwrap().shares[0].mounted_at, None);
    }

    #[test]
    fn lists_tags_and_their_mounts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (n, tag) in [(0, "vfs2"), (1, "my share"), (2, "vfs1")] {
            let dir = r.join(format!("sys/fs/virtiofs/{n}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("tag"), format!("{tag}\n")).unwrap();
        }
        fs::create_dir_all(r.join("proc")).unwrap();
        fs::write(
            r.join("proc/mounts"),
            "proc /proc proc rw 0 0\nvfs1 /run/uvm/shares/vfs1 virtiofs rw,relatime 0 0\nmy\\040share /mnt/a\\040b virtiofs ro 0 0\nvfs2 /x tmpfs rw 0 0\n",
        )
        .unwrap();
        for target in ["run/uvm/shares/vfs1", "mnt/a b"] {
            fs::create_dir_all(r.join(target)).unwrap();
        }
        let reply = list_shares(r).unwrap();
        assert_eq!(
            reply.shares,
            vec![
                Share {
                    tag: "my share".into(),
                    mounted_at: Some("/mnt/a b".into())
                },
                Share {
                    tag: "vfs1".into(),
                    mounted_at: Some("/run/uvm/shares/vfs1".into())
                },
                Share {
                    tag: "vfs2".into(),
                    mounted_at: None
                },
            ]
        );
    }

    use crate::handlers::virtio_pci::{VIRTIO_ID_FS, fake};

    const VIRTIO_ID_NET: u16 = 1;

    fn share(tag: &str, mounted_at: Option<&str>) -> Share {
        Share {
            tag: tag.into(),
            mounted_at: mounted_at.map(Into::into),
        }
    }

    /// Two virtio-fs devices ("alpha" on virtio3, "layer-2" on virtio4)
    /// and a virtio-net one with a tag-like config, "alpha" mounted.
    fn pci_tree(r: &Path) {
        let config = fake::config(&fake::virtio_caps());
        fake::add_device(r, 6, 3, VIRTIO_ID_FS, &config, b"alpha");
        fake::add_device(r, 7, 4, VIRTIO_ID_FS, &config, b"layer-2\0junk");
        fake::add_device(r, 3, 0, VIRTIO_ID_NET, &config, b"not-a-share");
        fs::create_dir_all(r.join("proc")).unwrap();
        fs::write(
            r.join("proc/mounts"),
            "proc /proc proc rw 0 0\nalpha /run/uvm/shares/alpha virtiofs rw 0 0\nlayer-2 /x tmpfs rw 0 0\n",
        )
        .unwrap();
        fs::create_dir_all(r.join("run/uvm/shares/alpha")).unwrap();
    }

    #[test]
    fn without_sysfs_tags_come_from_the_pci_config() {
        let root = tempfile::tempdir().unwrap();
        pci_tree(root.path());
        assert_eq!(
            list_shares(root.path()).unwrap().shares,
            vec![
                share("alpha", Some("/run/uvm/shares/alpha")),
                share("layer-2", None)
            ]
        );
    }

    #[test]
    fn broken_devices_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        pci_tree(r);
        let looping = fake::config(&[(0x40, 0x50, 1, 0, 0, 0x38), (0x50, 0x40, 3, 0, 0, 1)]);
        fake::add_device(r, 8, 5, VIRTIO_ID_FS, &looping, b"looping");
        let past_end = fake::config(&[(0x40, 0, 4, 0, 0x7fe0, 0x1000)]);
        fake::add_device(r, 9, 6, VIRTIO_ID_FS, &past_end, b"past-end");
        let config = fake::config(&fake::virtio_caps());
        fake::add_device(r, 10, 7, VIRTIO_ID_FS, &config, b"");
        fake::add_device(r, 11, 8, VIRTIO_ID_FS, &config, b"bad\xff");
        let unreadable = fake::add_device(r, 12, 9, VIRTIO_ID_FS, &config, b"gone");
        fs::remove_file(unreadable.join("config")).unwrap();
        let tags: Vec<String> = list_shares(r)
            .unwrap()
            .shares
            .into_iter()
            .map(|s| s.tag)
            .collect();
        assert_eq!(tags, ["alpha", "layer-2"]);
    }

    #[test]
    fn sysfs_and_pci_tags_merge() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        pci_tree(r);
        let config = fake::config(&fake::virtio_caps());
        fake::add_device(r, 8, 5, VIRTIO_ID_FS, &config, b"stale");
        for (n, tag) in [(3, "alpha"), (5, "from-sysfs")] {
            let dir = r.join(format!("sys/fs/virtiofs/{n}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("tag"), format!("{tag}\n")).unwrap();
        }
        // Only virtio5 says which device it is: its config is not read.
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:08.0/virtio5",
            r.join("sys/fs/virtiofs/5/device"),
        )
        .unwrap();
        assert_eq!(
            list_shares(r).unwrap().shares,
            vec![
                share("alpha", Some("/run/uvm/shares/alpha")),
                share("from-sysfs", None),
                share("layer-2", None),
            ]
        );
    }

    #[test]
    fn tags_are_parsed_from_the_config() {
        assert_eq!(parse_tag(b"vfs\0x\0").unwrap(), "vfs");
        let long = [b'a'; CONFIG_LEN];
        assert_eq!(parse_tag(&long).unwrap(), "a".repeat(TAG_LEN));
        assert!(matches!(parse_tag(&[0; CONFIG_LEN]), Err(TagError::Empty)));
        assert!(matches!(
            parse_tag(b"\xc3\x28\0"),
            Err(TagError::NotUtf8(_))
        ));
    }

    #[test]
    fn no_virtiofs_means_no_shares() {
        let root = tempfile::tempdir().unwrap();
        assert!(list_shares(root.path()).unwrap().shares.is_empty());
    }

    #[test]
    fn writability_goes_through_the_system() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("mnt/ro")).unwrap();
        fs::create_dir_all(root.path().join("mnt/rw")).unwrap();
        let system = FakeSystem::default();
        system.set_read_only(root.path().join("mnt/ro"));
        assert!(!writable(root.path(), &system, "/mnt/ro").unwrap().writable);
        assert!(writable(root.path(), &system, "/mnt/rw").unwrap().writable);
        let error = writable(root.path(), &system, "/mnt/nope").unwrap_err();
        assert_eq!(error.to_body().kind, ErrorKind::NotFound);
        assert!(writable(root.path(), &system, "/mnt/../etc").is_err());
    }

    #[test]
    fn mount_fields_unescape() {
        assert_eq!(unescape_mount_field("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_mount_field("trailing\\04"), "trailing\\04");
    }
}
