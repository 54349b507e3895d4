//! The LUNs of one SCSI target and the target-level commands: REPORT LUNS,
//! and INQUIRY / REQUEST SENSE to a LUN that is not there.

use std::collections::BTreeMap;

use super::cdb::{Command, Transfer};
use super::data::{DataBuffers, HeldData};
use super::disk::ScsiLun;
use super::error::ScsiError;
use super::inquiry::{self, NOT_CONNECTED};
use super::outcome::Outcome;
use super::sense::Sense;

/// Highest LUN of a target (64 LUNs, the hcsshim controller model).
pub const MAX_LUN: u16 = 63;

/// The disks attached to one target, by LUN.
#[derive(Debug, Default)]
pub struct LunTable {
    luns: BTreeMap<u16, ScsiLun>,
}

/// The 8-byte REPORT LUNS entry of `lun` (peripheral addressing below 256,
/// flat addressing above, as Linux and QEMU encode it).
pub fn encode_lun(lun: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else {
        b[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        b[1] = lun as u8;
    }
    b
}

impl LunTable {
    /// An empty target.
    pub fn new() -> Self {
        LunTable::default()
    }

    /// Attaches `disk` at `lun`.
    pub fn insert(&mut self, lun: u16, disk: ScsiLun) -> Result<(), ScsiError> {
        if lun > MAX_LUN {
            return Err(ScsiError::LunOutOfRange { lun, max: MAX_LUN });
        }
        if self.luns.contains_key(&lun) {
            return Err(ScsiError::LunInUse(lun));
        }
        self.luns.insert(lun, disk);
        Ok(())
    }

    /// Detaches the disk at `lun`.
    pub fn remove(&mut self, lun: u16) -> Result<ScsiLun, ScsiError> {
        self.luns.remove(&lun).ok_or(ScsiError::NoSuchLun(lun))
    }

    /// Whether a disk is attached at `lun`.
    pub fn contains(&self, lun: u16) -> bool {
        self.luns.contains_key(&lun)
    }

    /// Whether no disk is attached.
    pub fn is_empty(&self) -> bool {
        self.luns.is_empty()
    }

    /// The disk at `lun`.
    pub fn get(&self, lun: u16) -> Option<&ScsiLun> {
        self.luns.get(&lun)
    }

    /// The attached LUNs in ascending order.
    pub fn luns(&self) -> Vec<u16> {
        self.luns.keys().copied().collect()
    }

    /// Executes `cdb` addressed to `lun` with its data phase in host
    /// memory: `data_out` holds write data, and a READ's data comes back in
    /// [`Outcome::data`] like every other command's.
    pub fn execute(&self, lun: u16, cdb: &[u8], data_out: &[u8]) -> Outcome {
        let mut held = HeldData::new(data_out);
        let mut out = self.execute_with(lun, cdb, &mut held);
        if out.placed_in > 0 {
            out.data = held.input;
            out.placed_in = 0;
        }
        out
    }

    /// Executes `cdb` addressed to `lun`; READ and WRITE move their data
    /// through `data`.
    pub fn execute_with(&self, lun: u16, cdb: &[u8], data: &mut dyn DataBuffers) -> Outcome {
        let cmd = match Command::parse(cdb) {
            Ok(c) => c,
            Err(sense) => return Outcome::check(sense),
        };
        if let Command::ReportLuns { alloc } = cmd {
            return self.report_luns(cdb, alloc);
        }
        if let Some(disk) = self.luns.get(&lun) {
            return disk.execute(&cmd, data);
        }
        let mut out = match cmd {
            Command::Inquiry {
                evpd: false,
                page: 0,
                ..
            } => Outcome::good(inquiry::standard(NOT_CONNECTED)),
            Command::RequestSense { desc: false, .. } => {
                Outcome::good(Sense::LUN_NOT_SUPPORTED.to_fixed().to_vec())
            }
            _ => Outcome::check(Sense::LUN_NOT_SUPPORTED),
        };
        if let Transfer::FromDevice(max) = cmd.transfer() {
            out.data
                .truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        out
    }

    fn report_luns(&self, cdb: &[u8], alloc: u32) -> Outcome {
        let select = cdb.get(2).copied().unwrap_or(0);
        if alloc < 16 || select > 2 {
            return Outcome::check(Sense::INVALID_FIELD);
        }
        // LUN 0 is always reported (SAM: it must be addressable), like QEMU.
        let mut luns = self.luns();
        if luns.first() != Some(&0) {
            luns.insert(0, 0);
        }
        let mut data = Vec::with_capacity(8 + 8 * luns.len());
        data.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
        data.extend_from_slice(&[0; 4]);
        for l in luns {
            data.extend_from_slice(&encode_lun(l));
        }
        data.truncate(usize::try_from(alloc).unwrap_or(usize::MAX));
        Outcome::good(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_encoding() {
        assert_eq!(encode_lun(5), [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(0x123), [0x41, 0x23, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn absent_lun_answers() {
        let t = LunTable::new();
        let inq = t.execute(3, &[0x12, 0, 0, 0, 36, 0], &[]);
        assert!(inq.is_good());
        assert_eq!(inq.data[0], NOT_CONNECTED);
        let tur = t.execute(3, &[0; 6], &[]);
        assert_eq!(tur.sense, Some(Sense::LUN_NOT_SUPPORTED));
        let rl = t.execute(3, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]);
        assert_eq!(&rl.data[..4], &8u32.to_be_bytes());
    }
}
