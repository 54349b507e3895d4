//! The virtio-net device: rx and tx queues moving frames between the guest
//! driver and a [`NetBackend`].

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_queue::{Queue, QueueOwnedT};
use vm_memory::GuestAddressSpace;

use super::backend::NetBackend;
use crate::virtio::device::read_config_window;
use crate::virtio::queue::{QueueError, add_used, pop_chain};
use crate::virtio::{
    ActivateContext, DeviceError, GuestMemoryHandle, VIRTIO_F_VERSION_1, VirtioDevice,
    VirtioInterrupt,
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

/// What [`NetHost::process_rx`] stopped on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStatus {
    /// The backend has no more frames.
    Drained,
    /// Frames may be waiting but the guest posted no receive buffer; the
    /// device pulls them itself when the guest posts some.
    NoBuffers,
    /// The driver is not running (or the device broke); frames stay in the
    /// backend.
    Inactive,
}

/// Why queue processing stopped and the device broke.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    /// The ring or a chain is broken.
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// A chain's buffers could not be accessed.
    #[error("descriptor buffer access failed: {0}")]
    Buffer(#[from] io::Error),
}

struct Active {
    mem: GuestMemoryHandle,
    rx: Queue,
    tx: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    broken: bool,
}

struct State {
    backend: Box<dyn NetBackend>,
    active: Option<Active>,
    scratch: Vec<u8>,
}

struct Inner {
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Active {
    fn fail(&mut self, what: &str, e: &ProcessError) {
        tracing::warn!("virtio-net {what} queue broken: {e}");
        self.broken = true;
        self.interrupt
            .set_needs_reset(&format!("virtio-net {what} queue: {e}"));
    }

    fn process_tx(&mut self, backend: &mut dyn NetBackend) -> Result<(), ProcessError> {
        let mem = self.mem.memory();
        let mut used = false;
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
            let len = reader.available_bytes();
            if len < VNET_HDR_SIZE || len - VNET_HDR_SIZE > MAX_FRAME {
                tracing::warn!(len, "virtio-net tx chain of impossible length dropped");
            } else {
                let mut buf = vec![0u8; len];
                if let Err(e) = reader.read_exact(&mut buf) {
                    break Err(e.into());
                }
                // The header is ignored: no offload was negotiated.
                match backend.send(&buf[VNET_HDR_SIZE..]) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tracing::debug!("virtio-net backend full; frame dropped");
                    }
                    // EIO: the tap's link is down (nobody brought the host
                    // side up); the frame is lost like on an unplugged cable.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        tracing::debug!("virtio-net backend link down; frame dropped");
                    }
                    Err(e) => tracing::warn!("virtio-net backend send failed: {e}"),
                }
            }
            if let Err(e) = add_used(&mut self.tx, &mem, head, 0) {
                break Err(e.into());
            }
            used = true;
        };
        if used {
            self.interrupt.signal_queue(TX_QUEUE);
        }
        result
    }

    fn process_rx(
        &mut self,
        backend: &mut dyn NetBackend,
        scratch: &mut [u8],
    ) -> Result<RxStatus, ProcessError> {
        let mem = self.mem.memory();
        let mut used = false;
        let result = loop {
            let chain = match pop_chain(&mut self.rx, &mem) {
                Ok(Some(c)) => c,
                Ok(None) => break Ok(RxStatus::NoBuffers),
                Err(e) => break Err(e.into()),
            };
            let head = chain.head_index();
            let mut writer = match chain.writer(&*mem) {
                Ok(w) => w,
                Err(e) => break Err(QueueError::Chain(e).into()),
            };
            let n = match backend.recv(scratch) {
                Ok(n) => n,
                Err(e) => {
                    self.rx.go_to_previous_position();
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::warn!("virtio-net backend receive failed: {e}");
                    }
                    break Ok(RxStatus::Drained);
                }
            };
            let room = writer.available_bytes();
            if VNET_HDR_SIZE + n > room {
                tracing::debug!(
                    frame = n,
                    room,
                    "virtio-net rx buffer too small; frame dropped"
                );
                self.rx.go_to_previous_position();
                continue;
            }
            let mut hdr = [0u8; VNET_HDR_SIZE];
            hdr[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
            if let Err(e) = writer
                .write_all(&hdr)
                .and_then(|()| writer.write_all(&scratch[..n]))
            {
                break Err(e.into());
            }
            if let Err(e) = add_used(&mut self.rx, &mem, head, (VNET_HDR_SIZE + n) as u32) {
                break Err(e.into());
            }
            used = true;
        };
        if used {
            self.interrupt.signal_queue(RX_QUEUE);
        }
        result
    }
}

impl State {
    fn rx(&mut self) -> RxStatus {
        let State {
            backend,
            active,
            scratch,
        } = self;
        match active.as_mut().filter(|a| !a.broken) {
            None => RxStatus::Inactive,
            Some(a) => match a.process_rx(backend.as_mut(), scratch) {
                Ok(s) => s,
                Err(e) => {
                    a.fail("rx", &e);
                    RxStatus::Inactive
                }
            },
        }
    }
}

/// The virtio-net device. Give it to the transport; keep a [`NetHost`]
/// (from [`NetDevice::host`]) to pump received frames.
pub struct NetDevice {
    inner: Arc<Inner>,
    mac: [u8; 6],
    fd: Option<RawFd>,
}

impl NetDevice {
    /// A device sending and receiving through `backend`, with MAC `mac`.
    pub fn new(backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Self {
        let fd = backend.fd();
        NetDevice {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    backend,
                    active: None,
                    scratch: vec![0u8; MAX_FRAME],
                }),
            }),
            mac,
            fd,
        }
    }

    /// The host-side handle.
    pub fn host(&self) -> NetHost {
        NetHost {
            inner: self.inner.clone(),
            fd: self.fd,
        }
    }
}

/// Host side of a virtio-net device: moves frames waiting in the backend to
/// the guest. Cheap to clone.
#[derive(Clone)]
pub struct NetHost {
    inner: Arc<Inner>,
    fd: Option<RawFd>,
}

impl NetHost {
    /// The backend's file descriptor, to poll for readability.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd
    }

    /// Moves waiting frames into the guest's receive buffers.
    pub fn process_rx(&self) -> RxStatus {
        self.inner.lock().rx()
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
        tracing::warn!(offset, "virtio-net configuration is read-only");
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), DeviceError> {
        let rx = ctx.take_queue(RX_QUEUE)?;
        let tx = ctx.take_queue(TX_QUEUE)?;
        self.inner.lock().active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            interrupt: ctx.interrupt,
            broken: false,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.lock().active = None;
    }

    fn queue_notify(&mut self, queue: u16) -> Result<(), DeviceError> {
        let mut st = self.inner.lock();
        let a = st.active.as_mut().ok_or(DeviceError::NotActivated)?;
        if a.broken {
            tracing::debug!(queue, "broken virtio-net device ignores notifications");
            return Ok(());
        }
        match queue {
            TX_QUEUE => {
                let State {
                    backend, active, ..
                } = &mut *st;
                if let Some(a) = active.as_mut()
                    && let Err(e) = a.process_tx(backend.as_mut())
                {
                    a.fail("tx", &e);
                }
            }
            RX_QUEUE => {
                st.rx();
            }
            q => return Err(DeviceError::NoSuchQueue(q)),
        }
        Ok(())
    }
}
