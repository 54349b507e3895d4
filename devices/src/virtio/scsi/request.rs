//! The request queues: one SCSI command per chain (request header and
//! data-out readable, response header and data-in writable).

use std::fs::File;
use std::io::{self, Read, Write};

use virtio_queue::DescriptorChain;

use super::config::{Address, ScsiConfig, decode_lun, response};
use crate::scsi::{Command, DataBuffers, LunTable, Transfer};
use crate::virtio::chain_io::{ChainBuffers, Direction};
use crate::virtio::queue::QueueError;
use crate::virtio::{GuestMemory, ProcessError};

/// A command response before encoding.
#[derive(Debug, Default)]
struct Response {
    response: u8,
    status: u8,
    resid: u32,
    sense: Vec<u8>,
    /// Small data-in, written after the sense area.
    data: Vec<u8>,
    /// Data-in already in the chain's buffers (a READ).
    placed_in: usize,
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
/// READ and WRITE data moves straight between the disk image and the
/// chain's buffers. Returns the number of bytes written to the chain.
pub fn handle_command(
    chain: DescriptorChain<&GuestMemory>,
    mem: &GuestMemory,
    luns: &LunTable,
    cfg: &ScsiConfig,
) -> Result<u32, ProcessError> {
    let mut reader = chain.clone().reader(mem).map_err(ProcessError::chain)?;
    let mut writer = chain.clone().writer(mem).map_err(ProcessError::chain)?;
    let resp_size = cfg.resp_size();
    let have = writer.available_bytes();
    if have < resp_size {
        return Err(ProcessError::ResponseTooSmall {
            have,
            need: resp_size,
        });
    }
    let resp = if reader.available_bytes() < cfg.req_size() {
        tracing::warn!(
            len = reader.available_bytes(),
            "virtio-scsi request shorter than its header"
        );
        Response::virtio(response::FAILURE, have - resp_size)
    } else {
        let mut hdr = vec![0u8; cfg.req_size()];
        reader.read_exact(&mut hdr)?;
        let mut data = ChainData {
            out: collect(&chain, mem, Direction::DeviceReadable, cfg.req_size())?,
            input: collect(&chain, mem, Direction::DeviceWritable, resp_size)?,
        };
        execute(&hdr, &mut data, luns)
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
    Ok(clamp32(writer.bytes_written() + resp.placed_in))
}

fn collect<'m>(
    chain: &DescriptorChain<&'m GuestMemory>,
    mem: &'m GuestMemory,
    direction: Direction,
    skip: usize,
) -> Result<ChainBuffers<'m>, ProcessError> {
    ChainBuffers::collect(chain, mem, direction, skip).map_err(|e| QueueError::from(e).into())
}

/// A request's data-out and data-in buffers in guest memory.
struct ChainData<'m> {
    out: ChainBuffers<'m>,
    input: ChainBuffers<'m>,
}

impl DataBuffers for ChainData<'_> {
    fn read_in(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.input.read_from(file, offset, len)
    }

    fn write_out(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.out.write_to(file, offset, len)
    }
}

fn execute(hdr: &[u8], data: &mut ChainData<'_>, luns: &LunTable) -> Response {
    let mut lun_field = [0u8; 8];
    lun_field.copy_from_slice(&hdr[..8]);
    let out_len = data.out.len();
    let data_in_room = data.input.len();
    let cdb = &hdr[super::config::CMD_REQ_HDR..];
    let lun = match decode_lun(&lun_field) {
        Address::Lun(l) if !luns.is_empty() => l,
        _ => return Response::virtio(response::BAD_TARGET, data_in_room + out_len),
    };
    // The data phase the CDB asks for must fit the buffers the driver gave
    // (a READ's length is exact, so it is checked before any data moves).
    let mut consumed_if_good = 0;
    if let Ok(cmd) = Command::parse(cdb) {
        match cmd.transfer() {
            Transfer::ToDevice(n) if n > out_len as u64 => {
                tracing::debug!(need = n, have = out_len, "virtio-scsi data-out overrun");
                return Response::virtio(response::OVERRUN, data_in_room + out_len);
            }
            Transfer::ToDevice(n) => consumed_if_good = n as usize,
            Transfer::FromDevice(n)
                if matches!(cmd, Command::Read { .. }) && n > data_in_room as u64 =>
            {
                tracing::debug!(need = n, have = data_in_room, "virtio-scsi data-in overrun");
                return Response::virtio(response::OVERRUN, data_in_room + out_len);
            }
            _ => {}
        }
    }
    let outcome = luns.execute_with(lun, cdb, data);
    let data_in = outcome.data_in_len();
    if data_in > data_in_room {
        tracing::debug!(
            need = data_in,
            have = data_in_room,
            "virtio-scsi data-in overrun"
        );
        return Response::virtio(response::OVERRUN, data_in_room + out_len);
    }
    let consumed_out = if outcome.is_good() {
        consumed_if_good
    } else {
        0
    };
    Response {
        response: response::OK,
        status: outcome.status,
        resid: clamp32((data_in_room - data_in) + (out_len - consumed_out)),
        sense: outcome
            .sense
            .map(|s| s.to_fixed().to_vec())
            .unwrap_or_default(),
        data: outcome.data,
        placed_in: outcome.placed_in,
    }
}
