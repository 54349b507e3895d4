//! Files: virtio-fs mounts and reading files and directories.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::block::read_at;
use super::{HandlerError, HandlerResult, guest_path};
use crate::hex;
use crate::protocol::{DataReply, DirEntry, DirReply, Empty, EntryKind, MAX_READ, WriteReply};
use crate::system::System;

/// The file system type virtio-fs mounts use.
pub const VIRTIOFS: &str = "virtiofs";

/// `mount`: mounts virtio-fs `tag` at `path` (created if missing).
pub fn mount(
    root: &Path,
    system: &dyn System,
    tag: &str,
    path: &str,
    read_only: bool,
) -> HandlerResult<Empty> {
    if tag.is_empty() || tag.contains('\0') {
        return Err(HandlerError::InvalidArgument(format!(
            "invalid tag {tag:?}"
        )));
    }
    let target = guest_path(root, path)?;
    let mkdir = |e| HandlerError::io(format!("mkdir {}", target.display()), e);
    let dead_mount = |e: &std::io::Error| {
        e.raw_os_error() == Some(libc::ENOTCONN)
            || std::fs::metadata(&target)
                .err()
                .and_then(|m| m.raw_os_error())
                == Some(libc::ENOTCONN)
    };
    match std::fs::create_dir_all(&target) {
        // A dead mount of a removed share sits at the path (mkdir says
        // EEXIST or ENOTCONN, stat says ENOTCONN): unmount it, then the path
        // is an ordinary directory again.
        Err(e) if dead_mount(&e) => {
            system
                .unmount(&target)
                .map_err(|e| HandlerError::io(format!("unmount dead mount {path}"), e))?;
            std::fs::create_dir_all(&target).map_err(mkdir)?;
        }
        other => other.map_err(mkdir)?,
    }
    system
        .mount(tag, &target, VIRTIOFS, read_only)
        .map_err(|e| HandlerError::io(format!("mount {VIRTIOFS} {tag} on {path}"), e))?;
    Ok(Empty {})
}

/// `unmount`: unmounts `path`.
pub fn unmount(root: &Path, system: &dyn System, path: &str) -> HandlerResult<Empty> {
    let target = guest_path(root, path)?;
    system
        .unmount(&target)
        .map_err(|e| HandlerError::io(format!("unmount {path}"), e))?;
    Ok(Empty {})
}

/// `read_file`: up to `len` (default and cap [`MAX_READ`]) bytes from `offset`.
pub fn read_file(
    root: &Path,
    path: &str,
    offset: u64,
    len: Option<u64>,
) -> HandlerResult<DataReply> {
    let len = len.unwrap_or(MAX_READ);
    if len > MAX_READ {
        return Err(HandlerError::InvalidArgument(format!(
            "len {len} is over the limit of {MAX_READ} bytes"
        )));
    }
    let full = guest_path(root, path)?;
    let mut file = File::open(&full).map_err(|e| HandlerError::io(format!("open {path}"), e))?;
    let data =
        read_at(&mut file, offset, len).map_err(|e| HandlerError::io(format!("read {path}"), e))?;
    Ok(DataReply {
        len: data.len() as u64,
        data: hex::encode(&data),
    })
}

/// `write_file`: hex `data` (at most [`MAX_READ`] bytes) to `path`,
/// created or truncated, fsynced if `sync`.
pub fn write_file(root: &Path, path: &str, data: &str, sync: bool) -> HandlerResult<WriteReply> {
    let bytes = hex::decode(data).map_err(|e| HandlerError::InvalidArgument(e.to_string()))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(HandlerError::InvalidArgument(format!(
            "{} bytes is over the limit of {MAX_READ} bytes",
            bytes.len()
        )));
    }
    let full = guest_path(root, path)?;
    let mut file =
        File::create(&full).map_err(|e| HandlerError::io(format!("create {path}"), e))?;
    file.write_all(&bytes)
        .map_err(|e| HandlerError::io(format!("write {path}"), e))?;
    if sync {
        file.sync_all()
            .map_err(|e| HandlerError::io(format!("fsync {path}"), e))?;
    }
    Ok(WriteReply {
        written: bytes.len() as u64,
        synced: sync,
    })
}

/// `list_dir`: the entries of a directory, sorted by name.
pub fn list_dir(root: &Path, path: &str) -> HandlerResult<DirReply> {
    let full = guest_path(root, path)?;
    let entries =
        std::fs::read_dir(&full).map_err(|e| HandlerError::io(format!("read_dir {path}"), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HandlerError::io(format!("read_dir {path}"), e))?;
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| HandlerError::io(format!("stat {}", entry.path().display()), e))?;
        let kind = if meta.is_symlink() {
            EntryKind::Symlink
        } else if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        out.push(DirEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind,
            size: meta.len(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(DirReply { entries: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use crate::system::fake::{FakeSystem, MountCall};
    use std::fs;

    #[test]
    fn mount_creates_the_mount_point_and_mounts_virtiofs() {
        let root = tempfile::tempdir().unwrap();
        let system = FakeSystem::default();
        mount(root.path(), &system, "share0", "/mnt/share0", true).unwrap();
        assert!(root.path().join("mnt/share0").is_dir());
        assert_eq!(
            system.mounts(),
            vec![MountCall {
                source: "share0".into(),
                target: root.path().join("mnt/share0"),
                fstype: "virtiofs".into(),
                read_only: true,
            }]
        );
        unmount(root.path(), &system, "/mnt/share0").unwrap();
        assert_eq!(system.unmounts(), vec![root.path().join("mnt/share0")]);
        assert!(mount(root.path(), &system, "", "/mnt/x", false).is_err());
        assert!(mount(root.path(), &system, "t", "/mnt/../x", false).is_err());
    }

    #[test]
    fn reads_files_and_lists_directories() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mnt/share0");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("hello.txt"), b"hello world").unwrap();
        std::os::unix::fs::symlink("hello.txt", dir.join("link")).unwrap();

        let data = read_file(root.path(), "/mnt/share0/hello.txt", 6, None).unwrap();
        assert_eq!(hex::decode(&data.data).unwrap(), b"world");
        let data = read_file(root.path(), "/mnt/share0/hello.txt", 0, Some(5)).unwrap();
        assert_eq!(hex::decode(&data.data).unwrap(), b"hello");

        let listing = list_dir(root.path(), "/mnt/share0").unwrap();
        let names: Vec<_> = listing
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("hello.txt", EntryKind::File),
                ("link", EntryKind::Symlink),
                ("sub", EntryKind::Dir)
            ]
        );
        assert_eq!(listing.entries[0].size, 11);

        let error = read_file(root.path(), "/mnt/share0/nope", 0, None).unwrap_err();
        assert_eq!(error.to_body().kind, ErrorKind::NotFound);
        let error = list_dir(root.path(), "/nope").unwrap_err();
        assert_eq!(error.to_body().kind, ErrorKind::NotFound);
    }

    #[test]
    fn writes_files() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("mnt")).unwrap();
        fs::write(root.path().join("mnt/a"), b"a longer old content").unwrap();
        let reply = write_file(root.path(), "/mnt/a", "6869", true).unwrap();
        assert_eq!(
            reply,
            WriteReply {
                written: 2,
                synced: true
            }
        );
        assert_eq!(fs::read(root.path().join("mnt/a")).unwrap(), b"hi");
        write_file(root.path(), "/mnt/new", "", false).unwrap();
        assert_eq!(fs::read(root.path().join("mnt/new")).unwrap(), b"");
        let kind = |e: HandlerError| e.to_body().kind;
        assert_eq!(
            kind(write_file(root.path(), "/nodir/a", "00", true).unwrap_err()),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(write_file(root.path(), "/mnt/a", "0", true).unwrap_err()),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(write_file(root.path(), "/mnt", "00", true).unwrap_err()),
            ErrorKind::Io
        );
    }
}
