//! A writer for the `newc` cpio format the kernel unpacks as an initramfs
//! (uncompressed: the kernel takes it as is, and it saves TCG time).

use std::collections::BTreeSet;
use std::io::{self, Write};

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

    /// Writes the archive, ending with the `TRAILER!!!` member.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut written = 0u64;
        for (ino, (name, entry)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(ino + 1).unwrap_or(u32::MAX);
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir => (0o040_755, &[], (0, 0)),
                Entry::File { data, mode } => (0o100_000 | mode, data, (0, 0)),
                Entry::Symlink { target } => (0o120_777, target.as_bytes(), (0, 0)),
                Entry::CharDev { major, minor } => (0o020_600, &[], (*major, *minor)),
            };
            written += write_member(out, ino, mode, name, data, rdev)?;
        }
        written += write_member(out, 0, 0, "TRAILER!!!", &[], (0, 0))?;
        Ok(written)
    }
}

fn pad(out: &mut impl Write, len: u64) -> io::Result<u64> {
    let padding = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..usize::try_from(padding).unwrap_or(0)])?;
    Ok(padding)
}

fn write_member(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    name: &str,
    data: &[u8],
    rdev: (u32, u32),
) -> io::Result<u64> {
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is too big for cpio"),
        )
    };
    let size = u32::try_from(data.len()).map_err(|_| too_big())?;
    let namesize = u32::try_from(name.len() + 1).map_err(|_| too_big())?;
    let nlink = if mode & 0o040_000 != 0 && mode & 0o100_000 == 0 {
        2
    } else {
        1
    };
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{devmajor:08x}{devminor:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        mtime = 0,
        devmajor = 0,
        devminor = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let mut written = header.len() as u64 + u64::from(namesize);
    written += pad(out, written)?;
    out.write_all(data)?;
    written += u64::from(size);
    written += pad(out, u64::from(size))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_aligned_newc_members_with_parents_and_trailer() {
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
        let mut out = Vec::new();
        let n = archive.write_to(&mut out).unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        // bin (auto), bin/busybox, dev (auto), dev/console, bin/sh, trailer.
        assert_eq!(text.matches("070701").count(), 6);
        assert!(text.starts_with("070701"));
        assert!(text.contains("bin/busybox\0"));
        assert!(text.contains("TRAILER!!!\0"));
        // The first member is the directory "bin": mode 040755, name size 4.
        assert_eq!(&text[14..22], "000041ed");
        assert_eq!(&text[94..102], "00000004");
        // The file's data follows its 4-aligned name.
        let pos = text.find("bin/busybox\0").unwrap() + "bin/busybox\0".len();
        let data_at = pos.div_ceil(4) * 4;
        assert_eq!(&out[data_at..data_at + 3], b"abc");
        // The console node carries rdev 5:1.
        let console = text.find("dev/console").unwrap() - 110;
        assert_eq!(&text[console + 78..console + 94], "0000000500000001");
    }
}
