//! virtio-scsi constants, the device configuration layout, and the 8-byte
//! LUN address of requests and events.

use crate::scsi::{MAX_LUN, MAX_TRANSFER_BLOCKS};

/// Virtio device type of virtio-scsi.
pub const VIRTIO_ID_SCSI: u32 = 8;
/// Index of the control queue.
pub const CONTROL_QUEUE: u16 = 0;
/// Index of the event queue.
pub const EVENT_QUEUE: u16 = 1;
/// Index of the first request queue.
pub const FIRST_REQUEST_QUEUE: u16 = 2;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 128;
/// Most request queues a device may have (the transport's vector budget).
pub const MAX_REQUEST_QUEUES: u16 = 8;

/// Feature bit: the host reports LUN hot add and removal on the event queue.
pub const VIRTIO_SCSI_F_HOTPLUG: u64 = 1 << 1;

/// Default (and largest accepted) CDB size in requests.
pub const DEFAULT_CDB_SIZE: u32 = 32;
/// Default sense buffer size in responses.
pub const DEFAULT_SENSE_SIZE: u32 = 96;
/// Largest CDB or sense size a driver may configure.
pub const MAX_CONFIGURABLE_SIZE: u32 = 255;
/// Size of an event on the event queue.
pub const EVENT_SIZE: usize = 16;

/// Fixed part of a command request before the CDB: lun, tag, task
/// attribute, priority, CRN.
pub const CMD_REQ_HDR: usize = 19;
/// Fixed part of a command response before the sense data.
pub const CMD_RESP_HDR: usize = 12;

/// Response codes of the virtio-scsi `response` byte.
pub mod response {
    /// The request completed (or the task management function completed).
    pub const OK: u8 = 0;
    /// The data buffers do not match the command's data phase.
    pub const OVERRUN: u8 = 1;
    /// The request was aborted.
    pub const ABORTED: u8 = 2;
    /// The LUN address names no target of this device.
    pub const BAD_TARGET: u8 = 3;
    /// The request was failed for another reason.
    pub const FAILURE: u8 = 9;
    /// The task management function succeeded (a queried task exists).
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    /// The task management function is not supported.
    pub const FUNCTION_REJECTED: u8 = 11;
    /// The LUN is not attached.
    pub const INCORRECT_LUN: u8 = 12;
}

/// Event types and reasons.
pub mod event {
    /// No event (used to deliver a bare EVENTS_MISSED flag).
    pub const NO_EVENT: u32 = 0;
    /// A transport reset of a target or LUN.
    pub const TRANSPORT_RESET: u32 = 1;
    /// Flag: events were lost; the driver rescans the whole bus.
    pub const EVENTS_MISSED: u32 = 0x8000_0000;
    /// Transport reset reason: the LUN appeared, scan it.
    pub const RESET_RESCAN: u32 = 1;
    /// Transport reset reason: the LUN is gone, remove it.
    pub const RESET_REMOVED: u32 = 2;
}

/// Control queue request types and task management functions.
pub mod ctrl {
    /// Task management function request.
    pub const T_TMF: u32 = 0;
    /// Asynchronous notification query.
    pub const T_AN_QUERY: u32 = 1;
    /// Asynchronous notification subscription.
    pub const T_AN_SUBSCRIBE: u32 = 2;
    /// ABORT TASK.
    pub const TMF_ABORT_TASK: u32 = 0;
    /// ABORT TASK SET.
    pub const TMF_ABORT_TASK_SET: u32 = 1;
    /// CLEAR ACA.
    pub const TMF_CLEAR_ACA: u32 = 2;
    /// CLEAR TASK SET.
    pub const TMF_CLEAR_TASK_SET: u32 = 3;
    /// I_T NEXUS RESET.
    pub const TMF_I_T_NEXUS_RESET: u32 = 4;
    /// LOGICAL UNIT RESET.
    pub const TMF_LOGICAL_UNIT_RESET: u32 = 5;
    /// QUERY TASK.
    pub const TMF_QUERY_TASK: u32 = 6;
    /// QUERY TASK SET.
    pub const TMF_QUERY_TASK_SET: u32 = 7;
    /// Size of a TMF request.
    pub const TMF_REQ_SIZE: usize = 24;
    /// Size of an AN request.
    pub const AN_REQ_SIZE: usize = 16;
    /// Size of an AN response.
    pub const AN_RESP_SIZE: usize = 5;
}

/// Where a request's 8-byte LUN field points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// LUN `0` of the single target.
    Lun(u16),
    /// Not the single target of this device.
    BadTarget,
}

/// Decodes the LUN field: byte 0 is 1, byte 1 the target (only 0 exists),
/// bytes 2-3 the LUN in peripheral or flat (0x4000) addressing.
pub fn decode_lun(b: &[u8; 8]) -> Address {
    if b[0] != 1 || b[1] != 0 || b[2] >> 6 > 1 {
        return Address::BadTarget;
    }
    Address::Lun((u16::from(b[2] & 0x3f) << 8) | u16::from(b[3]))
}

/// The LUN field of an event about `lun` (the encoding Linux expects back,
/// the one REPORT LUNS uses: flat addressing only from LUN 256 on).
pub fn event_lun(lun: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = 1;
    if lun >= 256 {
        b[2] = 0x40 | ((lun >> 8) as u8 & 0x3f);
    }
    b[3] = lun as u8;
    b
}

/// The device configuration (virtio 1.x 5.6.4); the driver may write
/// `sense_size` and `cdb_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiConfig {
    /// Number of request queues.
    pub num_queues: u32,
    /// Sense bytes the driver reserves in each response.
    pub sense_size: u32,
    /// CDB bytes in each request.
    pub cdb_size: u32,
}

/// Offset of `sense_size` in the configuration.
const SENSE_SIZE_OFFSET: u64 = 20;
/// Offset of `cdb_size` in the configuration.
const CDB_SIZE_OFFSET: u64 = 24;

impl ScsiConfig {
    /// The defaults with `num_queues` request queues.
    pub fn new(num_queues: u32) -> Self {
        ScsiConfig {
            num_queues,
            sense_size: DEFAULT_SENSE_SIZE,
            cdb_size: DEFAULT_CDB_SIZE,
        }
    }

    /// The 36-byte configuration as the driver reads it.
    pub fn bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        let words = [
            self.num_queues,
            u32::from(QUEUE_SIZE) - 2, // seg_max
            MAX_TRANSFER_BLOCKS,       // max_sectors
            u32::from(QUEUE_SIZE),     // cmd_per_lun
            EVENT_SIZE as u32,         // event_info_size
            self.sense_size,
            self.cdb_size,
        ];
        for (i, w) in words.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        // max_channel (28) and max_target (30) stay 0: one target.
        b[32..36].copy_from_slice(&u32::from(MAX_LUN).to_le_bytes());
        b
    }

    /// This configuration with the sizes a driver wrote (a snapshot's),
    /// if a driver could have written them.
    pub fn with_driver_sizes(self, sense_size: u32, cdb_size: u32) -> Result<Self, String> {
        if sense_size > MAX_CONFIGURABLE_SIZE || !(6..=MAX_CONFIGURABLE_SIZE).contains(&cdb_size) {
            return Err(format!(
                "sense size {sense_size} / CDB size {cdb_size} out of range"
            ));
        }
        Ok(ScsiConfig {
            sense_size,
            cdb_size,
            ..self
        })
    }

    /// Applies a driver write; only whole, in-range `sense_size` and
    /// `cdb_size` writes take effect.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(v) = <[u8; 4]>::try_from(data).map(u32::from_le_bytes) else {
            tracing::warn!(offset, len = data.len(), "virtio-scsi config write ignored");
            return;
        };
        match offset {
            SENSE_SIZE_OFFSET if v <= MAX_CONFIGURABLE_SIZE => self.sense_size = v,
            CDB_SIZE_OFFSET if (6..=MAX_CONFIGURABLE_SIZE).contains(&v) => self.cdb_size = v,
            _ => tracing::warn!(offset, value = v, "virtio-scsi config write ignored"),
        }
    }

    /// Size of a command request header with the current CDB size.
    pub fn req_size(&self) -> usize {
        CMD_REQ_HDR + self.cdb_size as usize
    }

    /// Size of a command response header with the current sense size.
    pub fn resp_size(&self) -> usize {
        CMD_RESP_HDR + self.sense_size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_addressing() {
        assert_eq!(decode_lun(&[1, 0, 0x40, 5, 0, 0, 0, 0]), Address::Lun(5));
        assert_eq!(decode_lun(&[1, 0, 0, 7, 0, 0, 0, 0]), Address::Lun(7));
        assert_eq!(decode_lun(&[1, 1, 0x40, 0, 0, 0, 0, 0]), Address::BadTarget);
        assert_eq!(decode_lun(&[0, 0, 0, 0, 0, 0, 0, 0]), Address::BadTarget);
        assert_eq!(event_lun(3), [1, 0, 0, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn config_layout_and_writes() {
        let mut c = ScsiConfig::new(1);
        let b = c.bytes();
        assert_eq!(&b[20..24], &96u32.to_le_bytes());
        assert_eq!(&b[32..36], &63u32.to_le_bytes());
        c.write(24, &16u32.to_le_bytes());
        assert_eq!(c.cdb_size, 16);
        c.write(24, &1000u32.to_le_bytes());
        c.write(20, &[1, 2]);
        assert_eq!((c.cdb_size, c.sense_size), (16, 96));
    }
}
