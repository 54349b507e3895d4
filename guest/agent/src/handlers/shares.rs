//! virtio-fs shares: which tags the guest has, where they are mounted, and
//! whether a path is writable.

use std::path::Path;

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

/// `list_shares`: the tags of `/sys/fs/virtiofs/*/tag` (none when the
/// directory is missing: no virtio-fs driver or device), each with its
/// first virtio-fs mount point from `/proc/mounts`.
pub fn list_shares(root: &Path) -> HandlerResult<SharesReply> {
    let dir = root.join("sys/fs/virtiofs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SharesReply { shares: Vec::new() });
        }
        Err(e) => return Err(HandlerError::io(format!("read_dir {}", dir.display()), e)),
    };
    let mounts = std::fs::read_to_string(root.join("proc/mounts"))
        .map(|text| virtiofs_mounts(&text))
        .unwrap_or_default();
    let mut shares = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
        // A device being removed can lose its tag file under us: skip it.
        let Ok(tag) = read_trimmed(&entry.path().join("tag")) else {
            continue;
        };
        let mounted_at = mounts
            .iter()
            .find(|(source, _)| *source == tag)
            .map(|(_, target)| target.clone());
        shares.push(Share { tag, mounted_at });
    }
    shares.sort_by(|a, b| a.tag.cmp(&b.tag));
    shares.dedup_by(|a, b| a.tag == b.tag);
    Ok(SharesReply { shares })
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
