//! The virtio-vsock device (type 19): rx, tx and event queues moving
//! packets between the guest driver and the [`Muxer`].

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use virtio_queue::{Queue, QueueOwnedT};
use vm_memory::GuestAddressSpace;

use super::muxer::{Muxer, MuxerError};
use super::packet::{HDR_SIZE, Header, MAX_PAYLOAD};
use super::stream::{Connect, HostListener};
use crate::virtio::device::read_config_window;
use crate::virtio::queue::{QueueError, add_used, pop_chain};
use crate::virtio::{
    ActivateContext, DeviceError, GuestMemoryHandle, VIRTIO_F_VERSION_1, VirtioDevice,
    VirtioInterrupt,
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

struct Active {
    mem: GuestMemoryHandle,
    rx: Queue,
    tx: Queue,
    /// Held so the guest's event buffers stay owned by the device; transport
    /// reset events are not sent (no snapshot support yet).
    _event: Option<Queue>,
    interrupt: Arc<dyn VirtioInterrupt>,
    broken: bool,
}

struct State {
    muxer: Muxer,
    active: Option<Active>,
}

struct Inner {
    state: Mutex<State>,
    notify: Arc<Notify>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why processing a queue stopped.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    /// The rings or a chain are broken.
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// A chain's buffers could not be read or written.
    #[error("descriptor buffer access failed: {0}")]
    Buffer(std::io::Error),
}

impl Active {
    fn fail(&mut self, what: &str, e: &ProcessError) {
        self.broken = true;
        self.interrupt
            .set_needs_reset(&format!("vsock {what} queue: {e}"));
    }

    /// Consumes every chain the guest put on the tx queue.
    fn process_tx(&mut self, muxer: &mut Muxer) -> Result<(), ProcessError> {
        let mem = self.mem.memory();
        let mut used_any = false;
        let result = loop {
            let chain = match pop_chain(&mut self.tx, &mem) {
                Ok(Some(c)) => c,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            };
            let head = chain.head_index();
            let mut reader = match chain.reader(&*mem) {
                Ok(r) => r,
                Err(e) => break Err(QueueError::Chain(e).into()),
            };
            let parsed = read_packet(&mut reader);
            if let Err(e) = add_used(&mut self.tx, &mem, head, 0) {
                break Err(e.into());
            }
            used_any = true;
            match parsed {
                Ok(Ok((h, payload))) => muxer.handle_packet(&h, payload),
                Ok(Err(h)) => {
                    // A header with an impossible length: answer like an unknown packet.
                    tracing::warn!(
                        len = h.len,
                        "vsock packet length does not match its buffers"
                    );
                    muxer.reject(&h);
                }
                Err(Some(e)) => break Err(ProcessError::Buffer(e)),
                Err(None) => tracing::warn!("vsock tx chain shorter than a header; dropped"),
            }
        };
        if used_any {
            self.interrupt.signal_queue(TX_QUEUE);
        }
        result
    }

    /// Fills rx buffers with whatever the muxer has for the guest.
    fn process_rx(&mut self, muxer: &mut Muxer) -> Result<(), ProcessError> {
        let mem = self.mem.memory();
        let mut used_any = false;
        let result = loop {
            if !muxer.has_pending() {
                break Ok(());
            }
            let chain = match pop_chain(&mut self.rx, &mem) {
                Ok(Some(c)) => c,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            };
            let head = chain.head_index();
            let mut writer = match chain.writer(&*mem) {
                Ok(w) => w,
                Err(e) => break Err(QueueError::Chain(e).into()),
            };
            let room = writer.available_bytes();
            if room < HDR_SIZE {
                tracing::warn!(
                    room,
                    "vsock rx buffer smaller than a header; returned empty"
                );
                if let Err(e) = add_used(&mut self.rx, &mem, head, 0) {
                    break Err(e.into());
                }
                used_any = true;
                continue;
            }
            let Some((h, payload)) = muxer.next_packet(room - HDR_SIZE) else {
                self.rx.go_to_previous_position();
                break Ok(());
            };
            if let Err(e) = writer
                .write_all(&h.to_bytes())
                .and_then(|()| writer.write_all(&payload))
            {
                break Err(ProcessError::Buffer(e));
            }
            let len = (HDR_SIZE + payload.len()) as u32;
            if let Err(e) = add_used(&mut self.rx, &mem, head, len) {
                break Err(e.into());
            }
            used_any = true;
        };
        if used_any {
            self.interrupt.signal_queue(RX_QUEUE);
        }
        result
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

/// The virtio-vsock device. Give it to the transport; keep a [`VsockHost`]
/// (from [`VsockDevice::host`]) to listen and connect.
pub struct VsockDevice {
    guest_cid: u64,
    inner: Arc<Inner>,
    acked_features: u64,
    pump: JoinHandle<()>,
}

impl VsockDevice {
    /// A device for a guest with CID `guest_cid` (3 or more). Host-side
    /// events are pumped by a task spawned on `runtime`.
    pub fn new(guest_cid: u64, runtime: &Handle) -> Self {
        let notify = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                muxer: Muxer::new(guest_cid, notify.clone()),
                active: None,
            }),
            notify: notify.clone(),
        });
        let weak = Arc::downgrade(&inner);
        let pump = runtime.spawn(pump(weak, notify));
        VsockDevice {
            guest_cid,
            inner,
            acked_features: 0,
            pump,
        }
    }

    /// The host-side handle: listen and connect by port.
    pub fn host(&self) -> VsockHost {
        VsockHost {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for VsockDevice {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

async fn pump(inner: Weak<Inner>, notify: Arc<Notify>) {
    loop {
        notify.notified().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut st = inner.lock();
        let State { muxer, active } = &mut *st;
        if let Some(a) = active.as_mut().filter(|a| !a.broken)
            && let Err(e) = a.process_rx(muxer)
        {
            a.fail("rx", &e);
        }
    }
}

/// Host side of the device: listen for guest connections, connect to guest
/// listeners. Cheap to clone.
#[derive(Clone)]
pub struct VsockHost {
    inner: Arc<Inner>,
}

impl VsockHost {
    /// Listens on `port` (works before the guest driver is up).
    pub fn listen(&self, port: u32) -> Result<HostListener, MuxerError> {
        let rx = self.inner.lock().muxer.listen(port)?;
        Ok(HostListener::new(port, rx, self.clone()))
    }

    pub(crate) fn unlisten(&self, port: u32) {
        self.inner.lock().muxer.unlisten(port);
    }

    /// Connects to a guest listener on `port`. The returned future resolves
    /// when the guest answers (connection refused on RST, connection reset
    /// if the device is reset first). It waits for as long as the guest
    /// driver does not answer: wrap it in a timeout.
    pub fn connect(&self, port: u32) -> Result<Connect, MuxerError> {
        let stream = self.inner.lock().muxer.connect(port)?;
        self.inner.notify.notify_one();
        Ok(Connect::new(stream))
    }

    /// Live connections (for stats and tests).
    pub fn connection_count(&self) -> usize {
        self.inner.lock().muxer.connection_count()
    }

    /// Moves pending host data to the guest now instead of waiting for the
    /// pump task.
    pub fn kick(&self) {
        let mut st = self.inner.lock();
        let State { muxer, active } = &mut *st;
        if let Some(a) = active.as_mut().filter(|a| !a.broken)
            && let Err(e) = a.process_rx(muxer)
        {
            a.fail("rx", &e);
        }
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

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.guest_cid.to_le_bytes();
        read_config_window(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::warn!(offset, "vsock configuration is read-only");
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), DeviceError> {
        let rx = ctx.take_queue(RX_QUEUE)?;
        let tx = ctx.take_queue(TX_QUEUE)?;
        let event = ctx.take_optional_queue(EVENT_QUEUE);
        self.inner.lock().active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            _event: event,
            interrupt: ctx.interrupt,
            broken: false,
        });
        // Host connects made before the driver came up go out now.
        self.inner.notify.notify_one();
        Ok(())
    }

    fn reset(&mut self) {
        let mut st = self.inner.lock();
        st.active = None;
        st.muxer.reset();
    }

    fn queue_notify(&mut self, queue: u16) -> Result<(), DeviceError> {
        let mut st = self.inner.lock();
        let State { muxer, active } = &mut *st;
        let a = active.as_mut().ok_or(DeviceError::NotActivated)?;
        if a.broken {
            tracing::debug!(
                queue,
                "broken vsock device ignores notifications until reset"
            );
            return Ok(());
        }
        let result = match queue {
            TX_QUEUE => a
                .process_tx(muxer)
                .map_err(|e| ("tx", e))
                .and_then(|()| a.process_rx(muxer).map_err(|e| ("rx", e))),
            RX_QUEUE => a.process_rx(muxer).map_err(|e| ("rx", e)),
            EVENT_QUEUE => {
                tracing::trace!("vsock event buffers added");
                Ok(())
            }
            q => return Err(DeviceError::NoSuchQueue(q)),
        };
        if let Err((what, e)) = result {
            a.fail(what, &e);
        }
        Ok(())
    }
}
