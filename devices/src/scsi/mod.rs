//! SCSI command emulation for disk LUNs, independent of any transport.
//!
//! A [`ScsiLun`] executes the SBC/SPC commands a Linux initiator sends to a
//! disk (INQUIRY with the VPD pages, TEST UNIT READY, READ CAPACITY(10/16),
//! READ/WRITE(6/10/16), SYNCHRONIZE CACHE, MODE SENSE(6/10), REQUEST SENSE,
//! START STOP UNIT) over a [`DiskImage`]: a raw file or a whole block device,
//! opened as the caller says (formats are explicit, never probed), with
//! 512-byte logical blocks. A [`LunTable`] holds the disks of one target and
//! answers the target-level commands (REPORT LUNS, INQUIRY to an absent
//! LUN). Every failure is CHECK CONDITION with fixed-format sense data.

pub mod cdb;
pub mod data;
pub mod disk;
pub mod error;
pub mod inquiry;
pub mod lun_table;
pub mod mode;
pub mod open;
pub mod outcome;
pub mod sense;

pub use cdb::{BLOCK_SIZE, Command, Transfer};
pub use data::{DataBuffers, HeldData};
pub use disk::{DiskImage, ImageKind, MAX_TRANSFER_BLOCKS, ScsiLun};
pub use error::ScsiError;
pub use lun_table::{LunTable, MAX_LUN};
pub use outcome::Outcome;
pub use sense::Sense;
