//! The virtio-pmem device model.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue};
use vm_memory::GuestAddressSpace;

use crate::virtio::device::read_config_window;
use crate::virtio::queue::{QueueError, add_used, pop_chain};
use crate::virtio::{
    ActivateContext, DeviceError, GuestMemory, GuestMemoryHandle, VIRTIO_F_VERSION_1, VirtioDevice,
    VirtioInterrupt,
};

/// Virtio device type of virtio-pmem.
pub const VIRTIO_ID_PMEM: u32 = 27;
/// Maximum size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Request type: flush the region to stable storage.
pub const REQ_TYPE_FLUSH: u32 = 0;
/// Response: success.
pub const RESP_OK: u32 = 0;
/// Response: I/O error.
pub const RESP_EIO: u32 = 1;

/// Why request processing stopped and the device broke.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    /// The ring or a chain is broken.
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// A chain's buffers could not be accessed.
    #[error("descriptor buffer access failed: {0}")]
    Buffer(#[from] std::io::Error),
    /// No room for the 4-byte response.
    #[error("pmem request without room for its response")]
    NoResponse,
}

struct Active {
    mem: GuestMemoryHandle,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    broken: bool,
}

/// The virtio-pmem device over a backing file mapped by the VMM at guest
/// physical `start`, `size` bytes long.
pub struct PmemDevice {
    file: File,
    read_only: bool,
    start: u64,
    size: u64,
    active: Option<Active>,
}

impl PmemDevice {
    /// A device for `file`, mapped by the VMM at guest physical `start` for
    /// `size` bytes (`read_only`: mapped read-only, flushes are no-ops).
    pub fn new(file: File, read_only: bool, start: u64, size: u64) -> Self {
        PmemDevice {
            file,
            read_only,
            start,
            size,
            active: None,
        }
    }

    /// Answers every request on the queue.
    fn process(&mut self) -> Result<(), ProcessError> {
        let PmemDevice {
            file,
            read_only,
            active,
            ..
        } = self;
        let Some(a) = active.as_mut() else {
            return Ok(());
        };
        let mem = a.mem.memory();
        let mut used = false;
        let result = loop {
            let chain = match pop_chain(&mut a.queue, &mem) {
                Ok(Some(c)) => c,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            };
            let head = chain.head_index();
            let len = match handle(file, *read_only, chain, &mem) {
                Ok(len) => len,
                Err(e) => break Err(e),
            };
            if let Err(e) = add_used(&mut a.queue, &mem, head, len) {
                break Err(e.into());
            }
            used = true;
        };
        if used {
            a.interrupt.signal_queue(0);
        }
        result
    }
}

/// fdatasync of the backing file; a read-only image has nothing to flush.
fn flush(file: &File, read_only: bool) -> u32 {
    if read_only {
        return RESP_OK;
    }
    match file.sync_data() {
        Ok(()) => RESP_OK,
        Err(e) => {
            tracing::warn!("virtio-pmem flush failed: {e}");
            RESP_EIO
        }
    }
}

/// Answers one request; returns the bytes written.
fn handle(
    file: &File,
    read_only: bool,
    chain: DescriptorChain<&GuestMemory>,
    mem: &GuestMemory,
) -> Result<u32, ProcessError> {
    let mut reader = chain.clone().reader(mem).map_err(QueueError::Chain)?;
    let mut writer = chain.writer(mem).map_err(QueueError::Chain)?;
    if writer.available_bytes() < 4 {
        return Err(ProcessError::NoResponse);
    }
    let ret = if reader.available_bytes() < 4 {
        tracing::warn!("virtio-pmem request shorter than its type");
        RESP_EIO
    } else {
        let mut t = [0u8; 4];
        reader.read_exact(&mut t)?;
        match u32::from_le_bytes(t) {
            REQ_TYPE_FLUSH => flush(file, read_only),
            other => {
                tracing::warn!(kind = other, "unknown virtio-pmem request");
                RESP_EIO
            }
        }
    };
    writer.write_all(&ret.to_le_bytes())?;
    Ok(4)
}

impl VirtioDevice for PmemDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_PMEM
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {}

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; 16];
        cfg[..8].copy_from_slice(&self.start.to_le_bytes());
        cfg[8..].copy_from_slice(&self.size.to_le_bytes());
        read_config_window(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::warn!(offset, "virtio-pmem configuration is read-only");
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), DeviceError> {
        let queue = ctx.take_queue(0)?;
        self.active = Some(Active {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
            broken: false,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }

    fn queue_notify(&mut self, queue: u16) -> Result<(), DeviceError> {
        if queue != 0 {
            return Err(DeviceError::NoSuchQueue(queue));
        }
        match self.active.as_ref() {
            None => return Err(DeviceError::NotActivated),
            Some(a) if a.broken => {
                tracing::debug!("broken virtio-pmem device ignores notifications");
                return Ok(());
            }
            Some(_) => {}
        }
        if let Err(e) = self.process()
            && let Some(a) = self.active.as_mut()
        {
            a.broken = true;
            a.interrupt.set_needs_reset(&format!("virtio-pmem: {e}"));
        }
        Ok(())
    }
}
