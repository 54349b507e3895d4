//! A disk LUN: the SBC/SPC command set over a raw file or a whole block
//! device, with 512-byte logical blocks.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::cdb::{BLOCK_SIZE, Command};
use super::data::DataBuffers;
use super::error::ScsiError;
use super::inquiry::{self, TYPE_DISK, VpdInfo};
use super::mode::{self, ModeRequest};
use super::open::{make_blocking, open_nonblocking};
use super::outcome::Outcome;
use super::sense::Sense;

/// Largest READ/WRITE transfer accepted, in blocks (1 MiB); reported in the
/// block limits VPD page and as virtio-scsi `max_sectors`.
pub const MAX_TRANSFER_BLOCKS: u32 = 2048;

/// How the host side of a disk is stored. Formats are explicit and never
/// probed from the image's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A raw image in a regular file.
    Raw,
    /// A whole host block device.
    BlockDevice,
}

/// An open disk image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    blocks: u64,
    read_only: bool,
}

impl DiskImage {
    /// Opens `path` as `kind`, read-only or read-write. The type of the
    /// opened file must match the kind; a trailing partial block is not
    /// exposed. A FIFO, socket or character device is refused without
    /// blocking (see [`super::open`]).
    pub fn open(path: &Path, kind: ImageKind, read_only: bool) -> Result<Self, ScsiError> {
        let open_err = |source| ScsiError::Open {
            path: path.to_path_buf(),
            source,
        };
        let (mut file, meta) = open_nonblocking(path, read_only).map_err(open_err)?;
        let ft = meta.file_type();
        match kind {
            ImageKind::Raw if !ft.is_file() => {
                return Err(ScsiError::NotRegularFile(path.to_path_buf()));
            }
            ImageKind::BlockDevice if !ft.is_block_device() => {
                return Err(ScsiError::NotBlockDevice(path.to_path_buf()));
            }
            _ => {}
        }
        make_blocking(&file).map_err(open_err)?;
        let bytes = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        let blocks = bytes / BLOCK_SIZE;
        if blocks == 0 {
            return Err(ScsiError::TooSmall(path.to_path_buf()));
        }
        tracing::debug!(path = %path.display(), ?kind, blocks, read_only, "SCSI disk image opened");
        Ok(DiskImage {
            file,
            blocks,
            read_only,
        })
    }

    /// Number of 512-byte blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Whether the guest is refused writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

/// What a command produced for the initiator.
enum Reply {
    /// Small data-in, returned in the outcome.
    Held(Vec<u8>),
    /// This many bytes placed in the initiator's data-in buffers.
    Placed(usize),
}

/// A disk logical unit executing SCSI commands.
#[derive(Debug)]
pub struct ScsiLun {
    image: DiskImage,
    serial: String,
}

impl ScsiLun {
    /// A LUN over `image`, reporting `serial` (sanitized to printable ASCII,
    /// at most 36 bytes) in the unit serial and device identification pages.
    pub fn new(image: DiskImage, serial: &str) -> Self {
        ScsiLun {
            image,
            serial: inquiry::sanitize_serial(serial),
        }
    }

    /// The backing image.
    pub fn image(&self) -> &DiskImage {
        &self.image
    }

    /// Executes `cmd`. READ and WRITE move their data through `data`; the
    /// other commands' data-in comes back in the outcome, cut to the
    /// command's allocation length.
    pub fn execute(&self, cmd: &Command, data: &mut dyn DataBuffers) -> Outcome {
        let mut out = match self.run(cmd, data) {
            Ok(Reply::Held(data)) => Outcome::good(data),
            Ok(Reply::Placed(len)) => Outcome::placed(len),
            Err(sense) => {
                tracing::debug!(?cmd, ?sense, "SCSI command failed");
                Outcome::check(sense)
            }
        };
        if let super::cdb::Transfer::FromDevice(max) = cmd.transfer() {
            out.data
                .truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        out
    }

    fn run(&self, cmd: &Command, data: &mut dyn DataBuffers) -> Result<Reply, Sense> {
        match *cmd {
            Command::Read { lba, blocks: n } => {
                let (off, len) = self.range(lba, n)?;
                data.read_in(&self.image.file, off, len).map_err(|e| {
                    tracing::warn!(lba, blocks = n, "SCSI disk read failed: {e}");
                    Sense::READ_ERROR
                })?;
                Ok(Reply::Placed(len))
            }
            Command::Write {
                lba,
                blocks: n,
                fua,
            } => {
                if self.image.read_only {
                    return Err(Sense::WRITE_PROTECTED);
                }
                let (off, len) = self.range(lba, n)?;
                data.write_out(&self.image.file, off, len).map_err(|e| {
                    tracing::warn!(lba, blocks = n, "SCSI disk write failed: {e}");
                    Sense::WRITE_ERROR
                })?;
                if fua {
                    self.sync()?;
                }
                Ok(Reply::Held(Vec::new()))
            }
            _ => self.answer(cmd).map(Reply::Held),
        }
    }

    /// The data-in of a command without a bulk data phase.
    fn answer(&self, cmd: &Command) -> Result<Vec<u8>, Sense> {
        let blocks = self.image.blocks;
        match *cmd {
            Command::TestUnitReady | Command::StartStopUnit => Ok(Vec::new()),
            Command::RequestSense { desc, .. } => {
                if desc {
                    return Err(Sense::INVALID_FIELD);
                }
                Ok(Sense::NO_SENSE.to_fixed().to_vec())
            }
            Command::Inquiry {
                evpd: false, page, ..
            } => {
                if page != 0 {
                    return Err(Sense::INVALID_FIELD);
                }
                Ok(inquiry::standard(TYPE_DISK))
            }
            Command::Inquiry {
                evpd: true, page, ..
            } => inquiry::vpd(
                page,
                &VpdInfo {
                    serial: &self.serial,
                    max_transfer_blocks: MAX_TRANSFER_BLOCKS,
                },
            ),
            Command::ModeSense {
                ten,
                dbd,
                pc,
                page,
                subpage,
                ..
            } => mode::mode_sense(
                &ModeRequest {
                    ten,
                    dbd,
                    pc,
                    page,
                    subpage,
                },
                blocks,
                self.image.read_only,
            ),
            Command::ReadCapacity10 => {
                let last = u32::try_from(blocks - 1).unwrap_or(u32::MAX);
                let mut d = last.to_be_bytes().to_vec();
                d.extend_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
                Ok(d)
            }
            Command::ReadCapacity16 { .. } => {
                let mut d = vec![0u8; 32];
                d[0..8].copy_from_slice(&(blocks - 1).to_be_bytes());
                d[8..12].copy_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
                Ok(d)
            }
            Command::Read { .. } | Command::Write { .. } => {
                // Served by `run`, which has the data-phase buffers.
                Err(Sense::INVALID_OPCODE)
            }
            Command::SynchronizeCache => {
                self.sync()?;
                Ok(Vec::new())
            }
            Command::ReportLuns { .. } => {
                // Answered by the LUN table, which knows the other LUNs.
                Err(Sense::INVALID_OPCODE)
            }
            Command::Unsupported(op) => {
                tracing::debug!(opcode = op, "unsupported SCSI operation code");
                Err(Sense::INVALID_OPCODE)
            }
        }
    }

    fn sync(&self) -> Result<(), Sense> {
        if self.image.read_only {
            return Ok(());
        }
        self.image.file.sync_data().map_err(|e| {
            tracing::warn!("SCSI disk flush failed: {e}");
            Sense::WRITE_ERROR
        })
    }

    /// Byte offset and length of `n` blocks at `lba`, range-checked.
    fn range(&self, lba: u64, n: u32) -> Result<(u64, usize), Sense> {
        if n > MAX_TRANSFER_BLOCKS {
            return Err(Sense::INVALID_FIELD);
        }
        match lba.checked_add(u64::from(n)) {
            Some(end) if end <= self.image.blocks => {}
            _ => return Err(Sense::LBA_OUT_OF_RANGE),
        }
        // n <= MAX_TRANSFER_BLOCKS, so the length fits; lba < blocks, so
        // the offset cannot overflow for any real file size.
        Ok((lba * BLOCK_SIZE, n as usize * BLOCK_SIZE as usize))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::fs::OpenOptions;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    }

    /// Opens `path` on a thread; fails the test if the open hangs.
    fn open_promptly(
        path: &Path,
        kind: ImageKind,
        read_only: bool,
    ) -> Result<DiskImage, ScsiError> {
        let (tx, rx) = mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(DiskImage::open(&p, kind, read_only));
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(r) => r,
            Err(_) => {
                // Unblock the stuck open so the thread can end, then fail.
                let _ = OpenOptions::new().write(true).open(path);
                panic!("opening the FIFO {} blocked for 5 s", path.display());
            }
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        for (kind, ro) in [
            (ImageKind::Raw, true),
            (ImageKind::Raw, false),
            (ImageKind::BlockDevice, true),
        ] {
            let r = open_promptly(&fifo, kind, ro);
            match (kind, r) {
                (ImageKind::Raw, Err(ScsiError::NotRegularFile(p)))
                | (ImageKind::BlockDevice, Err(ScsiError::NotBlockDevice(p))) => {
                    assert_eq!(p, fifo)
                }
                (_, r) => panic!("{kind:?} ro={ro}: {r:?}"),
            }
        }
    }

    #[test]
    fn a_char_device_is_refused() {
        let r = open_promptly(Path::new("/dev/null"), ImageKind::Raw, true);
        assert!(matches!(r, Err(ScsiError::NotRegularFile(_))), "{r:?}");
    }

    #[test]
    fn a_regular_file_opens_and_blocks_normally() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(4096).unwrap();
        let image = open_promptly(f.path(), ImageKind::Raw, false).unwrap();
        assert_eq!(image.blocks(), 8);
        // SAFETY: F_GETFL on an fd this test owns only reads its flags.
        let flags = unsafe { libc::fcntl(image.file.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "O_NONBLOCK left set");
    }
}
