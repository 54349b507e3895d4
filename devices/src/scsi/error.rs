//! Errors of the host-side SCSI set-up (never of guest commands, which end
//! in sense data).

use std::path::PathBuf;

/// Why a disk could not be opened or a LUN not be attached.
#[derive(Debug, thiserror::Error)]
pub enum ScsiError {
    /// The backing file or device could not be opened or inspected.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A raw image must be a regular file.
    #[error("{0} is not a regular file (raw images must be files)")]
    NotRegularFile(PathBuf),
    /// A block-device disk must be a block device.
    #[error("{0} is not a block device")]
    NotBlockDevice(PathBuf),
    /// The image holds less than one 512-byte block.
    #[error("{0} is smaller than one 512-byte block")]
    TooSmall(PathBuf),
    /// The LUN number is beyond the controller's range.
    #[error("LUN {lun} is out of range (0..={max})")]
    LunOutOfRange {
        /// The LUN asked for.
        lun: u16,
        /// The highest LUN the controller supports.
        max: u16,
    },
    /// A disk is already attached at this LUN.
    #[error("LUN {0} is already in use")]
    LunInUse(u16),
    /// No disk is attached at this LUN.
    #[error("LUN {0} is not attached")]
    NoSuchLun(u16),
}
