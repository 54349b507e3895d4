//! The request queues: one SCSI command per chain (request header and
//! data-out readable, response header and data-in writable).

use std::io::{Read, Write};

use virtio_queue::DescriptorChain;

use super::config::{Address, ScsiConfig, decode_lun, response};
use crate::scsi::{Command, LunTable, MAX_TRANSFER_BLOCKS, Outcome, Transfer};
use crate::virtio::GuestMemory;
use crate::virtio::ProcessError;

/// Largest data-out phase read from a chain.
const MAX_DATA_OUT: usize = MAX_TRANSFER_BLOCKS as usize * 512;

/// A command response before encoding.
#[derive(Debug, Default)]
struct Response {
    response: u8,
    status: u8,
    resid: u32,
    sense: Vec<u8>,
    data: Vec<u8>,
}

impl Response {
    fn virtio(response: u8, resid: usize) -> Self {
        Response {
            response,
            resid: clamp32(resid),
            ..Response::default()
        }
    }
}

fn clamp32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Executes the command in `chain` against `luns` and writes the response.
/// Returns the number of bytes written to the chain.
pub fn handle_command(
    chain: DescriptorChain<&GuestMemory>,
    mem: &GuestMemory,
    luns: &LunTable,
    cfg: &ScsiConfig,
) -> Result<u32, ProcessError> {
    let mut reader = chain.clone().reader(mem).map_err(ProcessError::chain)?;
    let mut writer = chain.writer(mem).map_err(ProcessError::chain)?;
    let resp_size = cfg.resp_size();
    let have = writer.available_bytes();
    if have < resp_size {
        return Err(ProcessError::ResponseTooSmall {
            have,
            need: resp_size,
        });
    }
    let data_in_room = have - resp_size;
    let resp = if reader.available_bytes() < cfg.req_size() {
        tracing::warn!(
            len = reader.available_bytes(),
            "virtio-scsi request shorter than its header"
        );
        Response::virtio(response::FAILURE, data_in_room)
    } else {
        let mut hdr = vec![0u8; cfg.req_size()];
        reader.read_exact(&mut hdr)?;
        execute(&hdr, &mut reader, data_in_room, luns)?
    };
    let mut sense = resp.sense;
    sense.truncate(cfg.sense_size as usize);
    let mut head = [0u8; 12];
    head[0..4].copy_from_slice(&(sense.len() as u32).to_le_bytes());
    head[4..8].copy_from_slice(&resp.resid.to_le_bytes());
    head[10] = resp.status;
    head[11] = resp.response;
    writer.write_all(&head)?;
    // The sense area has its full configured size whatever the sense length.
    sense.resize(cfg.sense_size as usize, 0);
    writer.write_all(&sense)?;
    writer.write_all(&resp.data)?;
    Ok(clamp32(writer.bytes_written()))
}

fn execute<R: Read + Available>(
    hdr: &[u8],
    data_out: &mut R,
    data_in_room: usize,
    luns: &LunTable,
) -> Result<Response, ProcessError> {
    let mut lun_field = [0u8; 8];
    lun_field.copy_from_slice(&hdr[..8]);
    let out_len = data_out.available();
    let cdb = &hdr[super::config::CMD_REQ_HDR..];
    let lun = match decode_lun(&lun_field) {
        Address::Lun(l) if !luns.is_empty() => l,
        _ => {
            return Ok(Response::virtio(
                response::BAD_TARGET,
                data_in_room + out_len,
            ));
        }
    };
    // The data phase the CDB asks for must fit the buffers the driver gave.
    let mut out = Vec::new();
    if let Ok(cmd) = Command::parse(cdb) {
        match cmd.transfer() {
            Transfer::ToDevice(n) if n > out_len as u64 => {
                tracing::debug!(need = n, have = out_len, "virtio-scsi data-out overrun");
                return Ok(Response::virtio(response::OVERRUN, data_in_room + out_len));
            }
            Transfer::ToDevice(n) if n as usize <= MAX_DATA_OUT => {
                out = vec![0u8; n as usize];
                data_out.read_exact(&mut out)?;
            }
            _ => {}
        }
    }
    let Outcome {
        status,
        sense,
        data,
    } = luns.execute(lun, cdb, &out);
    if data.len() > data_in_room {
        tracing::debug!(
            need = data.len(),
            have = data_in_room,
            "virtio-scsi data-in overrun"
        );
        return Ok(Response::virtio(response::OVERRUN, data_in_room + out_len));
    }
    let consumed_out = if status == crate::scsi::sense::GOOD {
        out.len()
    } else {
        0
    };
    Ok(Response {
        response: response::OK,
        status,
        resid: clamp32((data_in_room - data.len()) + (out_len - consumed_out)),
        sense: sense.map(|s| s.to_fixed().to_vec()).unwrap_or_default(),
        data,
    })
}

/// Bytes left in a descriptor reader.
trait Available {
    fn available(&self) -> usize;
}

impl<B: vm_memory::bitmap::BitmapSlice> Available for virtio_queue::Reader<'_, B> {
    fn available(&self) -> usize {
        self.available_bytes()
    }
}
