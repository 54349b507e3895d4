//! An initramfs in the making: the members the kernel unpacks, with their
//! parent directories added on the way, written in the `newc` cpio format by
//! the `cpio` crate (uncompressed: the kernel takes it as is, and it saves
//! TCG time).

use std::collections::BTreeSet;
use std::io::{self, Write};

use cpio::newc;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A regular file with its contents and permission bits (e.g. 0o755).
    File {
        /// The contents.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link to `target`.
    Symlink {
        /// The link target.
        target: String,
    },
    /// A character device node (such as `/dev/console`, 5:1).
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// Builds an archive in memory; parent directories are added automatically.
#[derive(Debug, Default)]
pub struct Archive {
    entries: Vec<(String, Entry)>,
    dirs: BTreeSet<String>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn add_parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                self.entries.push((prefix.clone(), Entry::Dir));
            }
        }
    }

    /// Adds `entry` at `path` (absolute or relative; stored relative).
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_owned();
        self.add_parents(&path);
        if matches!(entry, Entry::Dir) && !self.dirs.insert(path.clone()) {
            return;
        }
        self.entries.push((path, entry));
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Entry::File { data, mode });
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) {
        self.add(path, Entry::Dir);
    }

    /// Writes the archive in `newc` format (through the `cpio` crate),
    /// ending with the `TRAILER!!!` member, and returns the bytes written.
    /// The output depends only on the members: inode numbers count up
    /// from 1, owners are root and every time stamp is 0.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut out = Counting {
            inner: out,
            bytes: 0,
        };
        for (index, (name, entry)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(index + 1).map_err(|_| too_big("the archive"))?;
            let (mode, data, (rdev_major, rdev_minor)): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir => (0o040_755, &[], (0, 0)),
                Entry::File { data, mode } => (0o100_000 | mode, data, (0, 0)),
                Entry::Symlink { target } => (0o120_777, target.as_bytes(), (0, 0)),
                Entry::CharDev { major, minor } => (0o020_600, &[], (*major, *minor)),
            };
            let size = u32::try_from(data.len()).map_err(|_| too_big(name))?;
            let nlink = if matches!(entry, Entry::Dir) { 2 } else { 1 };
            let mut member = newc::Builder::new(name)
                .ino(ino)
                .mode(mode)
                .nlink(nlink)
                .rdev_major(rdev_major)
                .rdev_minor(rdev_minor)
                .write(&mut out, size);
            member.write_all(data)?;
            member.finish()?;
        }
        newc::trailer(&mut out)?;
        Ok(out.bytes)
    }
}

fn too_big(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{name} is too big for cpio"),
    )
}

/// A writer that counts the bytes it passes on.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// One member as read back: name, mode, nlink, rdev and data.
    type Member = (String, u32, u32, (u32, u32), Vec<u8>);

    /// Reads an archive back with the `cpio` crate, up to the trailer.
    fn read_back(mut bytes: &[u8]) -> Vec<Member> {
        let mut members = Vec::new();
        loop {
            let mut reader = newc::Reader::new(bytes).unwrap();
            let e = reader.entry().clone();
            if e.is_trailer() {
                assert!(
                    reader.finish().unwrap().is_empty(),
                    "data after the trailer"
                );
                return members;
            }
            assert_eq!((e.uid(), e.gid(), e.mtime()), (0, 0, 0));
            assert_eq!(e.ino(), members.len() as u32 + 1);
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            let rdev = (e.rdev_major(), e.rdev_minor());
            members.push((e.name().to_owned(), e.mode(), e.nlink(), rdev, data));
            bytes = reader.finish().unwrap();
        }
    }

    #[test]
    fn lists_what_was_put_in_with_parents_modes_links_and_nodes() {
        let mut archive = Archive::new();
        archive.file("/bin/busybox", b"abc".to_vec(), 0o755);
        archive.add("dev/console", Entry::CharDev { major: 5, minor: 1 });
        archive.add(
            "bin/sh",
            Entry::Symlink {
                target: "busybox".into(),
            },
        );
        archive.dir("bin");
        archive.file("etc/uvm/modules.order", b"a.ko\n".to_vec(), 0o644);
        let mut out = Vec::new();
        let n = archive.write_to(&mut out).unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(out.len() % 4, 0);
        let members = read_back(&out);
        let expected: Vec<Member> = vec![
            ("bin".into(), 0o040_755, 2, (0, 0), vec![]),
            ("bin/busybox".into(), 0o100_755, 1, (0, 0), b"abc".to_vec()),
            ("dev".into(), 0o040_755, 2, (0, 0), vec![]),
            ("dev/console".into(), 0o020_600, 1, (5, 1), vec![]),
            ("bin/sh".into(), 0o120_777, 1, (0, 0), b"busybox".to_vec()),
            ("etc".into(), 0o040_755, 2, (0, 0), vec![]),
            ("etc/uvm".into(), 0o040_755, 2, (0, 0), vec![]),
            (
                "etc/uvm/modules.order".into(),
                0o100_644,
                1,
                (0, 0),
                b"a.ko\n".to_vec(),
            ),
        ];
        assert_eq!(members, expected);
    }

    #[test]
    fn the_same_members_give_the_same_bytes() {
        let build = || {
            let mut archive = Archive::new();
            archive.file("init", b"#!/bin/sh\n".to_vec(), 0o755);
            archive.dir("proc");
            let mut out = Vec::new();
            archive.write_to(&mut out).unwrap();
            out
        };
        assert_eq!(build(), build());
    }
}
