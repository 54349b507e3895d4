//! The control queue: task management functions and asynchronous
//! notification queries. Commands complete synchronously, so there is
//! never a task to abort: aborts and resets complete at once.

use std::io::{Read, Write};

use virtio_queue::DescriptorChain;

use super::config::{Address, ctrl, decode_lun, response};
use crate::scsi::LunTable;
use crate::virtio::GuestMemory;
use crate::virtio::ProcessError;

/// The answer to a task management function.
pub fn tmf_response(subtype: u32, lun: &[u8; 8], luns: &LunTable) -> u8 {
    let lun = match decode_lun(lun) {
        Address::Lun(l) if !luns.is_empty() => l,
        _ => return response::BAD_TARGET,
    };
    match subtype {
        ctrl::TMF_I_T_NEXUS_RESET => response::OK,
        _ if !luns.contains(lun) => response::INCORRECT_LUN,
        // Nothing is ever in flight: aborts, clears and resets have nothing
        // to do, and a queried task does not exist (FUNCTION COMPLETE).
        ctrl::TMF_ABORT_TASK
        | ctrl::TMF_ABORT_TASK_SET
        | ctrl::TMF_CLEAR_TASK_SET
        | ctrl::TMF_LOGICAL_UNIT_RESET
        | ctrl::TMF_QUERY_TASK
        | ctrl::TMF_QUERY_TASK_SET => response::OK,
        // No ACA support (NACA is never honoured), nor unknown functions.
        _ => response::FUNCTION_REJECTED,
    }
}

/// Handles one control request; returns the bytes written.
pub fn handle_control(
    chain: DescriptorChain<&GuestMemory>,
    mem: &GuestMemory,
    luns: &LunTable,
) -> Result<u32, ProcessError> {
    let mut reader = chain.clone().reader(mem).map_err(ProcessError::chain)?;
    let mut writer = chain.writer(mem).map_err(ProcessError::chain)?;
    let have = writer.available_bytes();
    let mut req = [0u8; ctrl::TMF_REQ_SIZE];
    let n = reader.available_bytes().min(req.len());
    reader.read_exact(&mut req[..n])?;
    let kind = (n >= 4).then(|| u32::from_le_bytes([req[0], req[1], req[2], req[3]]));
    let resp: Vec<u8> = match kind {
        Some(ctrl::T_TMF) if n >= ctrl::TMF_REQ_SIZE => {
            let subtype = u32::from_le_bytes([req[4], req[5], req[6], req[7]]);
            let mut lun = [0u8; 8];
            lun.copy_from_slice(&req[8..16]);
            let r = tmf_response(subtype, &lun, luns);
            tracing::debug!(subtype, response = r, "virtio-scsi task management");
            vec![r]
        }
        Some(ctrl::T_AN_QUERY | ctrl::T_AN_SUBSCRIBE) if n >= ctrl::AN_REQ_SIZE => {
            // No asynchronous notifications are supported: event_actual 0.
            let mut r = vec![0u8; ctrl::AN_RESP_SIZE];
            r[4] = response::OK;
            r
        }
        Some(ctrl::T_AN_QUERY | ctrl::T_AN_SUBSCRIBE) => {
            let mut r = vec![0u8; ctrl::AN_RESP_SIZE];
            r[4] = response::FAILURE;
            r
        }
        _ => {
            crate::log_limited!(warn, ?kind, len = n, "bad virtio-scsi control request");
            vec![response::FAILURE]
        }
    };
    if have < resp.len() {
        return Err(ProcessError::ResponseTooSmall {
            have,
            need: resp.len(),
        });
    }
    writer.write_all(&resp)?;
    Ok(resp.len() as u32)
}
