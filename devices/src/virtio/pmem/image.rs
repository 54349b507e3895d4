//! [`PmemImage`]: a virtio-pmem backing file, checked and mapped into the
//! VMM's address space, ready to become guest memory.
//!
//! The image is mapped shared, so the guest's stores and its flushes reach
//! the file; a read-only image is mapped `PROT_READ` (its KVM memory slot
//! must be read-only too, see the [module documentation](super)). Images
//! must be regular files, non-empty and a multiple of [`PMEM_ALIGN`] long:
//! Linux maps device memory in 2 MiB sections. The format is never probed:
//! the file is raw bytes whatever it contains.
//!
//! The file is opened once, without blocking on its type, and every check
//! runs on the opened fd (`fstat`), which is the fd mapped: replacing the
//! path after the open changes nothing (no check-then-open race).

use std::fs::File;
use std::path::{Path, PathBuf};

use vm_memory::FileOffset;
use vm_memory::mmap::MmapRegion;

use super::device::PmemDevice;
use crate::scsi::open::{make_blocking, open_nonblocking};

/// Alignment and size granularity of device memory (2 MiB).
pub const PMEM_ALIGN: u64 = 2 << 20;

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PmemError {
    /// The file's metadata could not be read (it may not exist).
    #[error("reading metadata of {path}: {source}")]
    Metadata {
        /// The image.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file.
    #[error("{0} is not a regular file")]
    NotRegularFile(PathBuf),
    /// The file is empty or not a multiple of [`PMEM_ALIGN`].
    #[error(
        "{path} is {len} bytes; VPMem images must be a non-zero multiple of {PMEM_ALIGN} bytes"
    )]
    BadLength {
        /// The image.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The file could not be opened, duplicated or mapped.
    #[error("{what} {path}: {source}")]
    Io {
        /// "opening", "duplicating the fd of" or "mapping".
        what: &'static str,
        /// The image.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A checked image file and its shared mapping; the mapping lives as long
/// as this value.
pub struct PmemImage {
    path: PathBuf,
    file: File,
    mapping: MmapRegion<()>,
    read_only: bool,
}

impl std::fmt::Debug for PmemImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PmemImage")
            .field("path", &self.path)
            .field("len", &self.len())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl PmemImage {
    /// The image length of the opened `file`, checked on the fd itself
    /// (`fstat`, so a path swapped after the open changes nothing): a
    /// regular file, non-empty, a multiple of [`PMEM_ALIGN`]. `path` only
    /// names the file in errors.
    pub fn checked_len(file: &File, path: &Path) -> Result<u64, PmemError> {
        let meta = file.metadata().map_err(|source| PmemError::Metadata {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(PmemError::NotRegularFile(path.to_path_buf()));
        }
        let len = meta.len();
        if len == 0 || !len.is_multiple_of(PMEM_ALIGN) {
            return Err(PmemError::BadLength {
                path: path.to_path_buf(),
                len,
            });
        }
        Ok(len)
    }

    /// Opens the image at `path` once (read-only if `read_only`), checks
    /// the opened fd and maps that same fd. The open does not block on a
    /// FIFO or device: such files are refused as not regular.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, PmemError> {
        let io = |what| {
            let path = path.to_path_buf();
            move |source| PmemError::Io { what, path, source }
        };
        let (file, _) =
            open_nonblocking(path, read_only).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => PmemError::Metadata {
                    path: path.to_path_buf(),
                    source,
                },
                std::io::ErrorKind::IsADirectory => PmemError::NotRegularFile(path.to_path_buf()),
                _ => io("opening")(source),
            })?;
        Self::checked_len(&file, path)?;
        make_blocking(&file).map_err(io("opening"))?;
        Self::from_file(file, path, read_only)
    }

    /// Checks the opened `file` ([`PmemImage::checked_len`]) and maps it
    /// (read-only if `read_only`; the fd must allow writes otherwise).
    /// `path` only names the file in errors and logs.
    pub fn from_file(file: File, path: &Path, read_only: bool) -> Result<Self, PmemError> {
        let len = Self::checked_len(&file, path)?;
        let io = |what| {
            let path = path.to_path_buf();
            move |source| PmemError::Io { what, path, source }
        };
        let size = usize::try_from(len).map_err(|_| PmemError::BadLength {
            path: path.to_path_buf(),
            len,
        })?;
        let prot = if read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let mapped = file.try_clone().map_err(io("duplicating the fd of"))?;
        let mapping = MmapRegion::build(
            Some(FileOffset::new(mapped, 0)),
            size,
            prot,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
        )
        .map_err(|e| io("mapping")(std::io::Error::other(e)))?;
        Ok(PmemImage {
            path: path.to_path_buf(),
            file,
            mapping,
            read_only,
        })
    }

    /// The image's length in bytes.
    pub fn len(&self) -> u64 {
        self.mapping.size() as u64
    }

    /// Whether the image has no bytes (never true for an opened image).
    pub fn is_empty(&self) -> bool {
        self.mapping.size() == 0
    }

    /// Where the mapping starts in the VMM's address space.
    pub fn host_address(&self) -> u64 {
        self.mapping.as_ptr() as u64
    }

    /// Whether the image is mapped read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The virtio-pmem device for this image mapped at guest physical
    /// `guest_address` (it flushes through its own fd of the file).
    pub fn device(&self, guest_address: u64) -> Result<PmemDevice, PmemError> {
        let flush = self.file.try_clone().map_err(|source| PmemError::Io {
            what: "duplicating the fd of",
            path: self.path.clone(),
            source,
        })?;
        Ok(PmemDevice::new(
            flush,
            self.read_only,
            guest_address,
            self.len(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_checked_before_they_are_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            PmemImage::open(&missing, false),
            Err(PmemError::Metadata { .. })
        ));
        assert!(matches!(
            PmemImage::open(dir.path(), false),
            Err(PmemError::NotRegularFile(_))
        ));
        let odd = dir.path().join("odd");
        std::fs::write(&odd, [0u8; 4096]).unwrap();
        assert!(matches!(
            PmemImage::open(&odd, false),
            Err(PmemError::BadLength { len: 4096, .. })
        ));
        let good = dir.path().join("good");
        std::fs::File::create(&good)
            .unwrap()
            .set_len(PMEM_ALIGN)
            .unwrap();
        let image = PmemImage::open(&good, true).unwrap();
        assert_eq!(image.len(), PMEM_ALIGN);
        assert!(image.read_only() && image.host_address() != 0);
        // SAFETY: the mapping is PMEM_ALIGN bytes long and lives as long as
        // `image`; reading its first byte is in bounds.
        let first = unsafe { *(image.host_address() as *const u8) };
        assert_eq!(first, 0);
    }

    #[test]
    fn validation_runs_on_the_opened_fd_not_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::File::create(&good)
            .unwrap()
            .set_len(PMEM_ALIGN)
            .unwrap();
        // An fd of a 4 KiB file, while the path now names a good image.
        let small = dir.path().join("small");
        std::fs::write(&small, [0u8; 4096]).unwrap();
        let small_fd = File::open(&small).unwrap();
        std::fs::rename(&good, &small).unwrap();
        assert!(matches!(
            PmemImage::from_file(small_fd, &small, true),
            Err(PmemError::BadLength { len: 4096, .. })
        ));
        // A directory's fd is refused whatever the path names.
        let dir_fd = File::open(dir.path()).unwrap();
        assert!(matches!(
            PmemImage::from_file(dir_fd, &small, true),
            Err(PmemError::NotRegularFile(_))
        ));
        // The good image's fd maps, though its path is replaced meanwhile.
        let good_fd = File::open(&small).unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, [0u8; 4096]).unwrap();
        std::fs::rename(&other, &small).unwrap();
        let image = PmemImage::from_file(good_fd, &small, true).unwrap();
        assert_eq!(image.len(), PMEM_ALIGN);
    }

    #[test]
    fn a_fifo_image_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(PmemImage::open(&p, true).map(|i| i.len()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO image blocked");
        assert!(matches!(r, Err(PmemError::NotRegularFile(_))), "{r:?}");
    }
}
