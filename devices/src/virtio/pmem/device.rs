//! The virtio-pmem device model.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;

use virtio_queue::{DescriptorChain, Queue};

use crate::quiesce::{Pausable, PauseError};
use crate::snapshot::{DeviceState, Snapshottable, StateError};
use crate::virtio::device::read_config_window;
use crate::virtio::running::RunState;
use crate::virtio::{
    ActivateContext, Activation, DeviceError, GuestMemory, ProcessError, QueueHandler,
    VIRTIO_F_VERSION_1, VirtioDevice, drain,
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
/// The device's name in logs.
const DEVICE: &str = "virtio-pmem";

/// The virtio-pmem device over a backing file mapped by the VMM at guest
/// physical `start`, `size` bytes long.
pub struct PmemDevice {
    start: u64,
    size: u64,
    queue: Arc<Mutex<PmemQueue>>,
}

/// The request queue's side of the device: what its worker flushes.
struct PmemQueue {
    file: File,
    read_only: bool,
    activation: Activation<Queue>,
}

impl PmemDevice {
    /// A device for `file`, mapped by the VMM at guest physical `start` for
    /// `size` bytes (`read_only`: mapped read-only, flushes are no-ops).
    pub fn new(file: File, read_only: bool, start: u64, size: u64) -> Self {
        PmemDevice {
            start,
            size,
            queue: Arc::new(Mutex::new(PmemQueue {
                file,
                read_only,
                activation: Activation::default(),
            })),
        }
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
    let mut reader = chain.clone().reader(mem).map_err(ProcessError::chain)?;
    let mut writer = chain.writer(mem).map_err(ProcessError::chain)?;
    let have = writer.available_bytes();
    if have < 4 {
        return Err(ProcessError::ResponseTooSmall { have, need: 4 });
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
        self.queue.lock().activation.start(ctx, queue);
        Ok(())
    }

    fn reset(&mut self) {
        self.queue.lock().activation.stop();
    }

    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(PmemQueueHandler {
            queue: self.queue.clone(),
        })
    }
}

/// Serves the request queue (the worker's handler): each flush request
/// runs `fdatasync` on the image, off the vCPU threads.
struct PmemQueueHandler {
    queue: Arc<Mutex<PmemQueue>>,
}

impl QueueHandler for PmemQueueHandler {
    fn handle_queue(&self, queue: u16) -> Result<(), DeviceError> {
        if queue != 0 {
            return Err(DeviceError::NoSuchQueue(queue));
        }
        let mut state = self.queue.lock();
        let PmemQueue {
            file,
            read_only,
            activation,
        } = &mut *state;
        if let Some(running) = activation.notified(DEVICE, queue)? {
            running.process(DEVICE, 0, "request queue", |q, mem, used| {
                drain(q, mem, used, |chain| handle(file, *read_only, chain, mem))
            });
        }
        Ok(())
    }
}

impl Pausable for PmemDevice {
    /// Flushes run only when the guest asks on the queue; paused, none does.
    fn pause(&mut self) -> Result<(), PauseError> {
        self.queue.lock().activation.pause();
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PauseError> {
        self.queue.lock().activation.resume();
        Ok(())
    }
}

/// The kind and version of the device's state in a snapshot.
const STATE_KIND: &str = "virtio-pmem";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of a virtio-pmem device: its run state and the
/// window the guest sees the image in (the VMM maps the image again at
/// the same place before the state goes back).
#[derive(serde::Serialize, serde::Deserialize)]
struct PmemState {
    run: Option<RunState>,
    start: u64,
    size: u64,
    read_only: bool,
}

impl Snapshottable for PmemDevice {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let queue = self.queue.lock();
        let state = PmemState {
            run: queue.activation.run_state()?,
            start: self.start,
            size: self.size,
            read_only: queue.read_only,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    /// Expects the image mapped again at the same window, in the same
    /// mode. On an error nothing changes.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let saved: PmemState = state.decode(STATE_KIND, STATE_VERSION)?;
        let mut queue = self.queue.lock();
        let now = (self.start, self.size, queue.read_only);
        if (saved.start, saved.size, saved.read_only) != now {
            return Err(StateError::Invalid(format!(
                "pmem window {:#x}+{:#x} (read-only {}) saved, {:#x}+{:#x} (read-only {}) now",
                saved.start, saved.size, saved.read_only, now.0, now.1, now.2
            )));
        }
        queue.activation.restore_run_state(saved.run.as_ref())
    }
}
