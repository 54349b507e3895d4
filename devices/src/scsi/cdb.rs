//! Command descriptor block decoding: which command, which fields, and how
//! much data it moves in which direction.

use super::sense::Sense;

/// Operation codes the emulation knows.
pub mod opcode {
    /// TEST UNIT READY.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REQUEST SENSE.
    pub const REQUEST_SENSE: u8 = 0x03;
    /// READ(6).
    pub const READ_6: u8 = 0x08;
    /// WRITE(6).
    pub const WRITE_6: u8 = 0x0a;
    /// INQUIRY.
    pub const INQUIRY: u8 = 0x12;
    /// MODE SENSE(6).
    pub const MODE_SENSE_6: u8 = 0x1a;
    /// START STOP UNIT.
    pub const START_STOP_UNIT: u8 = 0x1b;
    /// READ CAPACITY(10).
    pub const READ_CAPACITY_10: u8 = 0x25;
    /// READ(10).
    pub const READ_10: u8 = 0x28;
    /// WRITE(10).
    pub const WRITE_10: u8 = 0x2a;
    /// SYNCHRONIZE CACHE(10).
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    /// MODE SENSE(10).
    pub const MODE_SENSE_10: u8 = 0x5a;
    /// READ(16).
    pub const READ_16: u8 = 0x88;
    /// WRITE(16).
    pub const WRITE_16: u8 = 0x8a;
    /// SYNCHRONIZE CACHE(16).
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    /// SERVICE ACTION IN(16) (READ CAPACITY(16) is its action 0x10).
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    /// REPORT LUNS.
    pub const REPORT_LUNS: u8 = 0xa0;
}

/// SERVICE ACTION IN(16) action of READ CAPACITY(16).
pub const SAI_READ_CAPACITY_16: u8 = 0x10;

/// Page control field of MODE SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    /// Current values.
    Current,
    /// Changeable values (a mask).
    Changeable,
    /// Default values.
    Default,
    /// Saved values.
    Saved,
}

/// A decoded command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// TEST UNIT READY.
    TestUnitReady,
    /// REQUEST SENSE with its allocation length.
    RequestSense {
        /// Descriptor-format sense requested.
        desc: bool,
        /// Allocation length.
        alloc: u32,
    },
    /// INQUIRY.
    Inquiry {
        /// Vital product data page requested.
        evpd: bool,
        /// Page code.
        page: u8,
        /// Allocation length.
        alloc: u32,
    },
    /// MODE SENSE(6) or (10).
    ModeSense {
        /// The 10-byte form (8-byte header).
        ten: bool,
        /// Disable block descriptors.
        dbd: bool,
        /// Page control.
        pc: PageControl,
        /// Page code.
        page: u8,
        /// Subpage code.
        subpage: u8,
        /// Allocation length.
        alloc: u32,
    },
    /// START STOP UNIT (accepted, no effect).
    StartStopUnit,
    /// READ CAPACITY(10).
    ReadCapacity10,
    /// READ CAPACITY(16).
    ReadCapacity16 {
        /// Allocation length.
        alloc: u32,
    },
    /// READ(6/10/16).
    Read {
        /// First logical block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// WRITE(6/10/16).
    Write {
        /// First logical block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access: the data is on stable storage before completion.
        fua: bool,
    },
    /// SYNCHRONIZE CACHE(10/16).
    SynchronizeCache,
    /// REPORT LUNS.
    ReportLuns {
        /// Allocation length.
        alloc: u32,
    },
    /// An operation code the emulation does not implement.
    Unsupported(u8),
}

/// Direction and size of the data phase a command expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// No data phase.
    None,
    /// Up to this many bytes from the device to the initiator.
    FromDevice(u64),
    /// Exactly this many bytes from the initiator to the device.
    ToDevice(u64),
}

/// Size of a logical block.
pub const BLOCK_SIZE: u64 = 512;

fn be16(b: &[u8], o: usize) -> u32 {
    u32::from(u16::from_be_bytes([b[o], b[o + 1]]))
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn be64(b: &[u8], o: usize) -> u64 {
    (u64::from(be32(b, o)) << 32) | u64::from(be32(b, o + 4))
}

/// Length of a CDB from its group code, `None` for vendor-specific groups.
pub fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

impl Command {
    /// Decodes `cdb`. A CDB shorter than its operation code requires is an
    /// INVALID FIELD IN CDB error.
    pub fn parse(cdb: &[u8]) -> Result<Command, Sense> {
        let Some(&op) = cdb.first() else {
            return Err(Sense::INVALID_OPCODE);
        };
        let Some(len) = cdb_len(op) else {
            return Ok(Command::Unsupported(op));
        };
        if cdb.len() < len {
            return Err(Sense::INVALID_FIELD);
        }
        use opcode::*;
        let cmd = match op {
            TEST_UNIT_READY => Command::TestUnitReady,
            REQUEST_SENSE => Command::RequestSense {
                desc: cdb[1] & 1 != 0,
                alloc: u32::from(cdb[4]),
            },
            INQUIRY => Command::Inquiry {
                evpd: cdb[1] & 1 != 0,
                page: cdb[2],
                alloc: be16(cdb, 3),
            },
            MODE_SENSE_6 | MODE_SENSE_10 => Command::ModeSense {
                ten: op == MODE_SENSE_10,
                dbd: cdb[1] & 0x08 != 0,
                pc: match cdb[2] >> 6 {
                    0 => PageControl::Current,
                    1 => PageControl::Changeable,
                    2 => PageControl::Default,
                    _ => PageControl::Saved,
                },
                page: cdb[2] & 0x3f,
                subpage: cdb[3],
                alloc: if op == MODE_SENSE_10 {
                    be16(cdb, 7)
                } else {
                    u32::from(cdb[4])
                },
            },
            START_STOP_UNIT => Command::StartStopUnit,
            READ_CAPACITY_10 => Command::ReadCapacity10,
            SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == SAI_READ_CAPACITY_16 => {
                Command::ReadCapacity16 {
                    alloc: be32(cdb, 10),
                }
            }
            READ_6 | WRITE_6 => {
                let lba = (u64::from(cdb[1] & 0x1f) << 16) | u64::from(be16(cdb, 2));
                // A transfer length of 0 means 256 blocks in the 6-byte form.
                let blocks = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
                if op == READ_6 {
                    Command::Read { lba, blocks }
                } else {
                    Command::Write {
                        lba,
                        blocks,
                        fua: false,
                    }
                }
            }
            READ_10 => Command::Read {
                lba: u64::from(be32(cdb, 2)),
                blocks: be16(cdb, 7),
            },
            WRITE_10 => Command::Write {
                lba: u64::from(be32(cdb, 2)),
                blocks: be16(cdb, 7),
                fua: cdb[1] & 0x08 != 0,
            },
            READ_16 => Command::Read {
                lba: be64(cdb, 2),
                blocks: be32(cdb, 10),
            },
            WRITE_16 => Command::Write {
                lba: be64(cdb, 2),
                blocks: be32(cdb, 10),
                fua: cdb[1] & 0x08 != 0,
            },
            SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 => Command::SynchronizeCache,
            REPORT_LUNS => Command::ReportLuns {
                alloc: be32(cdb, 6),
            },
            other => Command::Unsupported(other),
        };
        Ok(cmd)
    }

    /// The data phase the command expects. READ and WRITE sizes come from
    /// the block count; the others are bounded by their allocation length.
    pub fn transfer(&self) -> Transfer {
        match *self {
            Command::TestUnitReady
            | Command::StartStopUnit
            | Command::SynchronizeCache
            | Command::Unsupported(_) => Transfer::None,
            Command::RequestSense { alloc, .. }
            | Command::Inquiry { alloc, .. }
            | Command::ModeSense { alloc, .. }
            | Command::ReadCapacity16 { alloc }
            | Command::ReportLuns { alloc } => Transfer::FromDevice(u64::from(alloc)),
            Command::ReadCapacity10 => Transfer::FromDevice(8),
            Command::Read { blocks, .. } => Transfer::FromDevice(u64::from(blocks) * BLOCK_SIZE),
            Command::Write { blocks, .. } => Transfer::ToDevice(u64::from(blocks) * BLOCK_SIZE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_10_fields() {
        let cdb = [0x28, 0, 0, 0, 0x01, 0x00, 0, 0, 0x08, 0];
        assert_eq!(
            Command::parse(&cdb),
            Ok(Command::Read {
                lba: 256,
                blocks: 8
            })
        );
        assert_eq!(
            Command::parse(&cdb).map(|c| c.transfer()),
            Ok(Transfer::FromDevice(4096))
        );
    }

    #[test]
    fn short_cdb_is_invalid_field() {
        assert_eq!(Command::parse(&[0x88, 0, 0]), Err(Sense::INVALID_FIELD));
        assert_eq!(Command::parse(&[]), Err(Sense::INVALID_OPCODE));
    }

    #[test]
    fn write_6_zero_means_256() {
        let cmd = Command::parse(&[0x0a, 0, 0, 1, 0, 0]);
        assert_eq!(
            cmd,
            Ok(Command::Write {
                lba: 1,
                blocks: 256,
                fua: false
            })
        );
    }

    #[test]
    fn vendor_groups_are_unsupported() {
        assert_eq!(Command::parse(&[0xc0; 6]), Ok(Command::Unsupported(0xc0)));
    }
}
