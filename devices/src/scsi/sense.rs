//! SCSI status codes and fixed-format sense data (SPC-4 4.5.3).

/// SCSI status byte: the command completed.
pub const GOOD: u8 = 0x00;
/// SCSI status byte: sense data describes why the command failed.
pub const CHECK_CONDITION: u8 = 0x02;

/// Length of fixed-format sense data as this emulation produces it.
pub const FIXED_SENSE_LEN: usize = 18;

/// Sense keys used by the emulation.
pub mod key {
    /// No error to report.
    pub const NO_SENSE: u8 = 0x0;
    /// The medium is not ready.
    pub const NOT_READY: u8 = 0x2;
    /// An unrecovered error from the medium (host I/O error).
    pub const MEDIUM_ERROR: u8 = 0x3;
    /// The device failed.
    pub const HARDWARE_ERROR: u8 = 0x4;
    /// The command or one of its fields is invalid.
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    /// The unit changed (reset, media change).
    pub const UNIT_ATTENTION: u8 = 0x6;
    /// A write was refused on a protected medium.
    pub const DATA_PROTECT: u8 = 0x7;
    /// The command was aborted.
    pub const ABORTED_COMMAND: u8 = 0xb;
}

/// A sense triple: key, additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
}

impl Sense {
    /// NO SENSE: nothing to report.
    pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0x00, 0x00);
    /// ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
    /// ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
    /// ILLEGAL REQUEST / INVALID FIELD IN CDB.
    pub const INVALID_FIELD: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
    /// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED.
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
    /// ILLEGAL REQUEST / SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
    /// DATA PROTECT / WRITE PROTECTED.
    pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
    /// MEDIUM ERROR / UNRECOVERED READ ERROR.
    pub const READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
    /// MEDIUM ERROR / WRITE ERROR.
    pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0c, 0x00);

    /// A sense triple.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Sense { key, asc, ascq }
    }

    /// Fixed-format sense data (response code 0x70, current error).
    pub fn to_fixed(&self) -> [u8; FIXED_SENSE_LEN] {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = 0x70;
        b[2] = self.key & 0x0f;
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        b[12] = self.asc;
        b[13] = self.ascq;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let b = Sense::LBA_OUT_OF_RANGE.to_fixed();
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], key::ILLEGAL_REQUEST);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x21, 0));
    }
}
