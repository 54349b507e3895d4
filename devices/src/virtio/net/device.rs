//! The virtio-net device: rx and tx queues moving frames between the guest
//! driver and a [`NetBackend`].

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;

use parking_lot::Mutex;
use virtio_queue::{Queue, QueueOwnedT};

use super::backend::NetBackend;
use super::rx_pump::{RxPump, RxStatus};
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

/// Virtio device type of virtio-net.
pub const VIRTIO_ID_NET: u32 = 1;
/// Index of the receive queue.
pub const RX_QUEUE: u16 = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: u16 = 1;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Feature bit: the configuration holds the MAC address.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Feature bit: the configuration holds the link status.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// Size of `virtio_net_hdr_v1` (virtio 1.x always has `num_buffers`).
pub const VNET_HDR_SIZE: usize = 12;
/// Link status bit: up.
const LINK_UP: u16 = 1;
/// Largest frame moved in either direction (no TSO: anything near this is
/// already hostile).
const MAX_FRAME: usize = 65_536;
/// The device's name in logs.
const DEVICE: &str = "virtio-net";

/// The queues of a running device.
struct Queues {
    rx: Queue,
    tx: Queue,
}

/// Everything the device and its host handle share.
struct State {
    backend: Box<dyn NetBackend>,
    activation: Activation<Queues>,
    scratch: Vec<u8>,
}

/// Sends every frame the driver queued for transmission.
fn transmit(
    tx: &mut Queue,
    mem: &GuestMemory,
    used: &mut bool,
    backend: &mut dyn NetBackend,
) -> Result<(), ProcessError> {
    drain(tx, mem, used, |chain| {
        let mut reader = chain.reader(mem).map_err(ProcessError::chain)?;
        let len = reader.available_bytes();
        if len < VNET_HDR_SIZE || len - VNET_HDR_SIZE > MAX_FRAME {
            crate::log_limited!(
                warn,
                len,
                "virtio-net tx chain of impossible length dropped"
            );
            return Ok(0);
        }
        let mut buf = vec![0u8; len];
        reader.read_exact(&mut buf)?;
        // The header is ignored: no offload was negotiated.
        match backend.send(&buf[VNET_HDR_SIZE..]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!("virtio-net backend full; frame dropped");
            }
            // EIO: the tap's link is down (nobody brought the host side
            // up); the frame is lost like on an unplugged cable.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                tracing::debug!("virtio-net backend link down; frame dropped");
            }
            Err(e) => crate::log_limited!(warn, "virtio-net backend send failed: {e}"),
        }
        Ok(0)
    })
}

/// Moves frames waiting in the backend into the driver's receive buffers.
fn receive(
    rx: &mut Queue,
    mem: &GuestMemory,
    used: &mut bool,
    backend: &mut dyn NetBackend,
    scratch: &mut [u8],
) -> Result<RxStatus, ProcessError> {
    loop {
        let Some(chain) = pop_chain(rx, mem)? else {
            return Ok(RxStatus::NoBuffers);
        };
        let head = chain.head_index();
        let mut writer = chain.writer(mem).map_err(ProcessError::chain)?;
        let n = match backend.recv(scratch) {
            Ok(n) => n,
            Err(e) => {
                rx.go_to_previous_position();
                if e.kind() != io::ErrorKind::WouldBlock {
                    crate::log_limited!(warn, "virtio-net backend receive failed: {e}");
                }
                return Ok(RxStatus::Drained);
            }
        };
        let room = writer.available_bytes();
        if VNET_HDR_SIZE + n > room {
            tracing::debug!(
                frame = n,
                room,
                "virtio-net rx buffer too small; frame dropped"
            );
            rx.go_to_previous_position();
            continue;
        }
        let mut hdr = [0u8; VNET_HDR_SIZE];
        hdr[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
        writer.write_all(&hdr)?;
        writer.write_all(&scratch[..n])?;
        add_used(rx, mem, head, (VNET_HDR_SIZE + n) as u32)?;
        *used = true;
    }
}

impl State {
    /// One receive pass, if the device may write guest memory now.
    fn rx(&mut self) -> RxStatus {
        let State {
            backend,
            activation,
            scratch,
        } = self;
        let Some(running) = activation.serving() else {
            return RxStatus::Inactive;
        };
        running
            .process(DEVICE, RX_QUEUE, "rx queue", |q, mem, used| {
                fill_then_notify(&mut q.rx, mem, used, |rx, returned| {
                    receive(rx, mem, returned, backend.as_mut(), scratch)
                })
            })
            .unwrap_or(RxStatus::Inactive)
    }
}

/// The virtio-net device. Give it to the transport. Frames for the guest
/// are moved either by its own receive pump ([`NetDevice::with_rx_pump`])
/// or by whoever holds a [`NetHost`] (from [`NetDevice::host`]).
pub struct NetDevice {
    state: Arc<Mutex<State>>,
    mac: [u8; 6],
    fd: Option<RawFd>,
    /// Dropped (stopped and joined) with the device.
    pump: Option<RxPump>,
}

impl NetDevice {
    /// A device sending and receiving through `backend`, with MAC `mac`;
    /// received frames move when [`NetHost::process_rx`] is called.
    pub fn new(backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Self {
        let fd = backend.fd();
        NetDevice {
            state: Arc::new(Mutex::new(State {
                backend,
                activation: Activation::default(),
                scratch: vec![0u8; MAX_FRAME],
            })),
            mac,
            fd,
            pump: None,
        }
    }

    /// A device whose received frames are moved by its own pump thread
    /// (named after `name`), which waits on the backend's fd; it stops
    /// with the device. Fails if the backend has no fd or the thread
    /// cannot start.
    pub fn with_rx_pump(
        backend: Box<dyn NetBackend>,
        mac: [u8; 6],
        name: &str,
    ) -> io::Result<Self> {
        let mut device = NetDevice::new(backend, mac);
        let fd = device
            .fd
            .ok_or_else(|| io::Error::other("the NIC's backend has no file descriptor"))?;
        let host = device.host();
        device.pump = Some(RxPump::start(name, fd, move || host.process_rx())?);
        Ok(device)
    }

    /// The host-side handle.
    pub fn host(&self) -> NetHost {
        NetHost {
            state: self.state.clone(),
            fd: self.fd,
        }
    }
}

/// Host side of a virtio-net device: moves frames waiting in the backend to
/// the guest. Cheap to clone.
#[derive(Clone)]
pub struct NetHost {
    state: Arc<Mutex<State>>,
    fd: Option<RawFd>,
}

impl NetHost {
    /// The backend's file descriptor, to poll for readability.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd
    }

    /// Moves waiting frames into the guest's receive buffers.
    pub fn process_rx(&self) -> RxStatus {
        self.state.lock().rx()
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2]
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    }

    fn ack_features(&mut self, _features: u64) {}

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; 10];
        cfg[..6].copy_from_slice(&self.mac);
        cfg[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        cfg[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        read_config_window(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // VIRTIO_NET_F_CTRL_MAC_ADDR is not offered: the MAC is the VMM's.
        crate::log_limited!(warn, offset, "virtio-net configuration is read-only");
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), DeviceError> {
        let rx = ctx.take_queue(RX_QUEUE)?;
        let tx = ctx.take_queue(TX_QUEUE)?;
        self.state.lock().activation.start(ctx, Queues { rx, tx });
        Ok(())
    }

    fn reset(&mut self) {
        self.state.lock().activation.stop();
    }

    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(NetQueues {
            state: self.state.clone(),
        })
    }
}

/// Serves the queues of a virtio-net device (its worker's handler): frames
/// the guest sends go to the backend, new receive buffers take what waits.
struct NetQueues {
    state: Arc<Mutex<State>>,
}

impl QueueHandler for NetQueues {
    fn handle_queue(&self, queue: u16) -> Result<(), DeviceError> {
        if queue != TX_QUEUE && queue != RX_QUEUE {
            return Err(DeviceError::NoSuchQueue(queue));
        }
        let mut st = self.state.lock();
        let State {
            backend,
            activation,
            ..
        } = &mut *st;
        let Some(running) = activation.notified(DEVICE, queue)? else {
            return Ok(());
        };
        if queue == TX_QUEUE {
            running.process(DEVICE, TX_QUEUE, "tx queue", |q, mem, used| {
                transmit(&mut q.tx, mem, used, backend.as_mut())
            });
        } else {
            st.rx();
        }
        Ok(())
    }
}

impl Pausable for NetDevice {
    /// Transmission runs on guest notifications (which the transport holds
    /// while paused) and reception stops: frames wait in the backend.
    fn pause(&mut self) -> Result<(), PauseError> {
        self.state.lock().activation.pause();
        Ok(())
    }

    /// Frames that arrived while paused go to the guest now.
    fn resume(&mut self) -> Result<(), PauseError> {
        let mut st = self.state.lock();
        st.activation.resume();
        st.rx();
        Ok(())
    }
}

/// The kind and version of the device's state in a snapshot.
const STATE_KIND: &str = "virtio-net";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of a virtio-net device: its run state. The MAC
/// and the tap are the VMM's to give the restored device (a clone may get
/// other ones; its guest keeps the address its driver read at probe).
/// Frames in flight on the host side are not kept: a network drops
/// frames, and the guest's protocols resend.
#[derive(serde::Serialize, serde::Deserialize)]
struct NetState {
    run: Option<RunState>,
}

impl Snapshottable for NetDevice {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let run = self.state.lock().activation.run_state()?;
        DeviceState::new(STATE_KIND, STATE_VERSION, &NetState { run })
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let saved: NetState = state.decode(STATE_KIND, STATE_VERSION)?;
        self.state
            .lock()
            .activation
            .restore_run_state(saved.run.as_ref())
    }
}

impl QueueSet for Queues {
    fn count(&self) -> u16 {
        2
    }

    fn queue(&self, index: u16) -> Option<&Queue> {
        match index {
            RX_QUEUE => Some(&self.rx),
            TX_QUEUE => Some(&self.tx),
            _ => None,
        }
    }

    fn queue_mut(&mut self, index: u16) -> Option<&mut Queue> {
        match index {
            RX_QUEUE => Some(&mut self.rx),
            TX_QUEUE => Some(&mut self.tx),
            _ => None,
        }
    }
}
