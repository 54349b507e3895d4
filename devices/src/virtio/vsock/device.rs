//! The virtio-vsock device (type 19): rx, tx and event queues moving
//! packets between the guest driver and its [`VsockBackend`] (the muxer).

use std::io::{Read, Write};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use virtio_queue::{Queue, QueueOwnedT};

use super::backend::{BackendHandle, SharedBackend, VsockBackend};
use super::packet::{HDR_SIZE, Header, MAX_PAYLOAD};
use crate::quiesce::{Pausable, PauseError};
use crate::snapshot::{DeviceState, Snapshottable, StateError};
use crate::virtio::device::read_config_window;
use crate::virtio::queue::QueueSet;
use crate::virtio::queue::{add_used, pop_chain};
use crate::virtio::running::RunState;
use crate::virtio::{
    ActivateContext, Activation, DeviceError, GuestMemory, ProcessError, QueueHandler,
    VIRTIO_F_VERSION_1, VirtioDevice, drain, fill_then_notify,
};

/// Virtio device type of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;
/// Index of the rx queue (device to driver).
pub const RX_QUEUE: u16 = 0;
/// Index of the tx queue (driver to device).
pub const TX_QUEUE: u16 = 1;
/// Index of the event queue.
pub const EVENT_QUEUE: u16 = 2;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The device's name in logs.
const DEVICE: &str = "virtio-vsock";

/// The event id of VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (virtio 1.2
/// 5.10.6.6): the guest's connected sockets are reset, its listeners stay.
pub const EVENT_TRANSPORT_RESET: u32 = 0;

/// The queues of a running device.
struct Queues {
    rx: Queue,
    tx: Queue,
    /// The guest's event buffers: a transport reset after a restore goes
    /// into one of them.
    event: Option<Queue>,
}

/// Consumes every chain the guest put on the tx queue.
fn transmit(
    tx: &mut Queue,
    mem: &GuestMemory,
    used: &mut bool,
    backend: &mut dyn VsockBackend,
) -> Result<(), ProcessError> {
    drain(tx, mem, used, |chain| {
        let mut reader = chain.reader(mem).map_err(ProcessError::chain)?;
        match read_packet(&mut reader) {
            Ok(Ok((h, payload))) => backend.handle_packet(&h, payload),
            Ok(Err(h)) => {
                // A header with an impossible length: answer like an unknown packet.
                crate::log_limited!(
                    warn,
                    len = h.len,
                    "vsock packet length does not match its buffers"
                );
                backend.reject(&h);
            }
            Err(Some(e)) => return Err(ProcessError::Buffer(e)),
            Err(None) => crate::log_limited!(warn, "vsock tx chain shorter than a header; dropped"),
        }
        Ok(0)
    })
}

/// Fills rx buffers with whatever the backend has for the guest.
fn receive(
    rx: &mut Queue,
    mem: &GuestMemory,
    used: &mut bool,
    backend: &mut dyn VsockBackend,
) -> Result<(), ProcessError> {
    while backend.has_pending() {
        let Some(chain) = pop_chain(rx, mem)? else {
            return Ok(());
        };
        let head = chain.head_index();
        let mut writer = chain.writer(mem).map_err(ProcessError::chain)?;
        let room = writer.available_bytes();
        if room < HDR_SIZE {
            crate::log_limited!(
                warn,
                room,
                "vsock rx buffer smaller than a header; returned empty"
            );
            add_used(rx, mem, head, 0)?;
            *used = true;
            continue;
        }
        let Some((h, payload)) = backend.next_packet(room - HDR_SIZE) else {
            rx.go_to_previous_position();
            return Ok(());
        };
        writer.write_all(&h.to_bytes())?;
        writer.write_all(&payload)?;
        add_used(rx, mem, head, (HDR_SIZE + payload.len()) as u32)?;
        *used = true;
    }
    Ok(())
}

/// One receive pass, if the device may write guest memory now.
fn deliver(activation: &mut Activation<Queues>, backend: &SharedBackend) {
    if let Some(running) = activation.serving() {
        let mut backend = backend.lock();
        running.process(DEVICE, RX_QUEUE, "rx queue", |q, mem, used| {
            fill_then_notify(&mut q.rx, mem, used, |rx, returned| {
                receive(rx, mem, returned, &mut *backend)
            })
        });
    }
}

/// Reads a header and its payload. `Ok(Err(h))`: the length field is
/// impossible; `Err(None)`: not even a header; `Err(Some(e))`: memory error.
#[allow(clippy::type_complexity)]
fn read_packet<R: Read + ReadAvailable>(
    reader: &mut R,
) -> Result<Result<(Header, Vec<u8>), Header>, Option<std::io::Error>> {
    if reader.available() < HDR_SIZE {
        return Err(None);
    }
    let mut raw = [0u8; HDR_SIZE];
    reader.read_exact(&mut raw).map_err(Some)?;
    let h = Header::from_bytes(&raw);
    let len = h.len as usize;
    if h.len > MAX_PAYLOAD || len > reader.available() {
        return Ok(Err(h));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(Some)?;
    Ok(Ok((h, payload)))
}

/// Bytes left in a descriptor reader.
trait ReadAvailable {
    fn available(&self) -> usize;
}

impl<B: vm_memory::bitmap::BitmapSlice> ReadAvailable for virtio_queue::Reader<'_, B> {
    fn available(&self) -> usize {
        self.available_bytes()
    }
}

/// The virtio-vsock device. Give it to the transport; build it on the
/// [`super::VsockHost`] that listens and connects for it.
pub struct VsockDevice {
    guest_cid: u64,
    /// Restored from a snapshot: at resume the guest is told that its
    /// connections are gone (they lived in the old VMM).
    reset_at_resume: bool,
    activation: Arc<Mutex<Activation<Queues>>>,
    backend: SharedBackend,
    wake: Arc<Notify>,
    pump: JoinHandle<()>,
}

impl VsockDevice {
    /// A device for a guest with CID `guest_cid` (3 or more) on `host`'s
    /// backend. Host-side events are pumped by a task spawned on `runtime`.
    pub fn new(guest_cid: u64, host: BackendHandle, runtime: &Handle) -> Self {
        let activation = Arc::new(Mutex::new(Activation::default()));
        let pump = runtime.spawn(pump(
            Arc::downgrade(&activation),
            host.backend.clone(),
            host.wake.clone(),
        ));
        VsockDevice {
            guest_cid,
            reset_at_resume: false,
            activation,
            backend: host.backend,
            wake: host.wake,
            pump,
        }
    }

    /// A handle that moves pending host data to the guest at once, instead
    /// of waiting for the pump task.
    pub fn kicker(&self) -> VsockKick {
        VsockKick {
            activation: self.activation.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl Drop for VsockDevice {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// Waits for the backend's wake-ups and delivers what it has.
async fn pump(
    activation: Weak<Mutex<Activation<Queues>>>,
    backend: SharedBackend,
    wake: Arc<Notify>,
) {
    loop {
        wake.notified().await;
        let Some(activation) = activation.upgrade() else {
            return;
        };
        deliver(&mut activation.lock(), &backend);
    }
}

/// Delivers pending host data to the guest on demand (see
/// [`VsockDevice::kicker`]). Cheap to clone.
#[derive(Clone)]
pub struct VsockKick {
    activation: Arc<Mutex<Activation<Queues>>>,
    backend: SharedBackend,
}

impl VsockKick {
    /// Moves pending host data to the guest now.
    pub fn kick(&self) {
        deliver(&mut self.activation.lock(), &self.backend);
    }
}

impl VirtioDevice for VsockDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 3]
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {
        // Only VERSION_1 is offered: nothing depends on the answer.
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.guest_cid.to_le_bytes();
        read_config_window(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        crate::log_limited!(warn, offset, "vsock configuration is read-only");
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), DeviceError> {
        let rx = ctx.take_queue(RX_QUEUE)?;
        let tx = ctx.take_queue(TX_QUEUE)?;
        let event = ctx.take_optional_queue(EVENT_QUEUE);
        self.activation.lock().start(ctx, Queues { rx, tx, event });
        // Host connects made before the driver came up go out now.
        self.wake.notify_one();
        Ok(())
    }

    fn reset(&mut self) {
        self.reset_at_resume = false;
        let mut activation = self.activation.lock();
        activation.stop();
        self.backend.lock().reset();
    }

    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(VsockQueues {
            activation: self.activation.clone(),
            backend: self.backend.clone(),
        })
    }
}

/// Serves the queues of the vsock device (its worker's handler): packets
/// the guest sends go to the multiplexer, whose answers and pending host
/// data fill the receive buffers.
struct VsockQueues {
    activation: Arc<Mutex<Activation<Queues>>>,
    backend: SharedBackend,
}

impl QueueHandler for VsockQueues {
    fn handle_queue(&self, queue: u16) -> Result<(), DeviceError> {
        if queue > EVENT_QUEUE {
            return Err(DeviceError::NoSuchQueue(queue));
        }
        let mut activation = self.activation.lock();
        let Some(running) = activation.notified(DEVICE, queue)? else {
            return Ok(());
        };
        let mut backend = self.backend.lock();
        match queue {
            TX_QUEUE => {
                let sent = running.process(DEVICE, TX_QUEUE, "tx queue", |q, mem, used| {
                    transmit(&mut q.tx, mem, used, &mut *backend)
                });
                if sent.is_some() {
                    running.process(DEVICE, RX_QUEUE, "rx queue", |q, mem, used| {
                        fill_then_notify(&mut q.rx, mem, used, |rx, returned| {
                            receive(rx, mem, returned, &mut *backend)
                        })
                    });
                }
            }
            RX_QUEUE => {
                running.process(DEVICE, RX_QUEUE, "rx queue", |q, mem, used| {
                    fill_then_notify(&mut q.rx, mem, used, |rx, returned| {
                        receive(rx, mem, returned, &mut *backend)
                    })
                });
            }
            _ => tracing::trace!("vsock event buffers added"),
        }
        Ok(())
    }
}

impl Pausable for VsockDevice {
    /// Guest packets wait in the tx ring (the transport holds their
    /// notifications) and host data waits in the backend.
    fn pause(&mut self) -> Result<(), PauseError> {
        self.activation.lock().pause();
        Ok(())
    }

    /// What the host wrote while paused goes to the guest now; after a
    /// restore, a transport reset goes first.
    fn resume(&mut self) -> Result<(), PauseError> {
        let mut activation = self.activation.lock();
        activation.resume();
        if std::mem::take(&mut self.reset_at_resume) {
            send_transport_reset(&mut activation);
        }
        drop(activation);
        self.wake.notify_one();
        Ok(())
    }
}

/// Puts a transport-reset event in the guest's first event buffer. Without
/// one (a driver that posted none) the guest is not told; its connections
/// then fail on their next packet, which the new backend answers with RST.
fn send_transport_reset(activation: &mut Activation<Queues>) {
    let Some(running) = activation.serving() else {
        return;
    };
    running.process(DEVICE, EVENT_QUEUE, "event queue", |q, mem, used| {
        let Some(event) = q.event.as_mut() else {
            return Ok(());
        };
        let Some(chain) = pop_chain(event, mem)? else {
            crate::log_limited!(warn, "no vsock event buffer: transport reset not sent");
            return Ok(());
        };
        let head = chain.head_index();
        let mut writer = chain.writer(mem).map_err(ProcessError::chain)?;
        let id = EVENT_TRANSPORT_RESET.to_le_bytes();
        let len = if writer.available_bytes() >= id.len() {
            writer.write_all(&id)?;
            id.len() as u32
        } else {
            0
        };
        add_used(event, mem, head, len)?;
        *used = true;
        tracing::info!("vsock transport reset sent to the guest");
        Ok(())
    });
}

/// The kind and version of the device's state in a snapshot.
const STATE_KIND: &str = "virtio-vsock";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of a vsock device: its run state and the guest's
/// CID. Connections are not kept: they belong to the host side of the old
/// VMM; the restored device resets them in the guest at resume (as
/// Firecracker does), and its listeners stay.
#[derive(serde::Serialize, serde::Deserialize)]
struct VsockState {
    run: Option<RunState>,
    guest_cid: u64,
}

impl Snapshottable for VsockDevice {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let state = VsockState {
            run: self.activation.lock().run_state()?,
            guest_cid: self.guest_cid,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    /// Expects a device for the same guest CID. On an error nothing
    /// changes.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let saved: VsockState = state.decode(STATE_KIND, STATE_VERSION)?;
        if saved.guest_cid != self.guest_cid {
            return Err(StateError::Invalid(format!(
                "guest CID {} saved, the device has {}",
                saved.guest_cid, self.guest_cid
            )));
        }
        let mut activation = self.activation.lock();
        activation.restore_run_state(saved.run.as_ref())?;
        self.reset_at_resume = activation.is_active();
        Ok(())
    }
}

impl QueueSet for Queues {
    fn count(&self) -> u16 {
        3
    }

    fn queue(&self, index: u16) -> Option<&Queue> {
        match index {
            RX_QUEUE => Some(&self.rx),
            TX_QUEUE => Some(&self.tx),
            EVENT_QUEUE => self.event.as_ref(),
            _ => None,
        }
    }

    fn queue_mut(&mut self, index: u16) -> Option<&mut Queue> {
        match index {
            RX_QUEUE => Some(&mut self.rx),
            TX_QUEUE => Some(&mut self.tx),
            EVENT_QUEUE => self.event.as_mut(),
            _ => None,
        }
    }
}
