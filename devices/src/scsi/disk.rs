//! A disk LUN: the SBC/SPC command set over a raw file or a whole block
//! device, with 512-byte logical blocks.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use super::cdb::{BLOCK_SIZE, Command};
use super::error::ScsiError;
use super::inquiry::{self, TYPE_DISK, VpdInfo};
use super::mode::{self, ModeRequest};
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
    /// Opens `path` as `kind`, read-only or read-write. The file type must
    /// match the kind; a trailing partial block is not exposed.
    pub fn open(path: &Path, kind: ImageKind, read_only: bool) -> Result<Self, ScsiError> {
        let open_err = |source| ScsiError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let ft = file.metadata().map_err(open_err)?.file_type();
        match kind {
            ImageKind::Raw if !ft.is_file() => {
                return Err(ScsiError::NotRegularFile(path.to_path_buf()));
            }
            ImageKind::BlockDevice if !ft.is_block_device() => {
                return Err(ScsiError::NotBlockDevice(path.to_path_buf()));
            }
            _ => {}
        }
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

    /// Executes `cmd`; `data_out` holds the initiator's data for writes.
    /// Data-in is cut to the command's allocation length.
    pub fn execute(&self, cmd: &Command, data_out: &[u8]) -> Outcome {
        let mut out = match self.run(cmd, data_out) {
            Ok(data) => Outcome::good(data),
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

    fn run(&self, cmd: &Command, data_out: &[u8]) -> Result<Vec<u8>, Sense> {
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
            Command::Read { lba, blocks: n } => {
                let (off, len) = self.range(lba, n)?;
                let mut buf = vec![0u8; len];
                self.image.file.read_exact_at(&mut buf, off).map_err(|e| {
                    tracing::warn!(lba, blocks = n, "SCSI disk read failed: {e}");
                    Sense::READ_ERROR
                })?;
                Ok(buf)
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
                let data = data_out.get(..len).ok_or(Sense::INVALID_FIELD)?;
                self.image.file.write_all_at(data, off).map_err(|e| {
                    tracing::warn!(lba, blocks = n, "SCSI disk write failed: {e}");
                    Sense::WRITE_ERROR
                })?;
                if fua {
                    self.sync()?;
                }
                Ok(Vec::new())
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
