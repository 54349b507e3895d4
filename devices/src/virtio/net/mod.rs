//! virtio-net (device type 1) over a frame backend: a tap device
//! ([`tap::Tap`]) in production, [`backend::MemoryBackend`] in tests.
//!
//! Features offered: VIRTIO_NET_F_MAC (the MAC from the VMM's `Nic`
//! description), VIRTIO_NET_F_STATUS (link always up), VERSION_1; no
//! offloads, no mergeable rx buffers, no control queue. Queues: 0 rx, 1 tx.
//! Every frame carries the 12-byte `virtio_net_hdr_v1`, all zero but
//! `num_buffers` = 1 on receive.
//!
//! # Wiring
//!
//! ```ignore
//! let tap = Tap::open("uvmtap%d")?;           // IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
//! let waker = RxWaker::new()?;
//! let dev = NetDevice::new(Box::new(WakeOnRecv::new(Box::new(tap), waker.clone())), mac);
//! let host = dev.host();                        // the rx pump's handle
//! let fd = host.fd().unwrap();
//! let pump = RxPump::start_with_waker("nic0", fd, waker, move || host.process_rx())?;
//! let function = VirtioPciDevice::new(Box::new(dev), mem, msi, intx)?;
//! ```
//!
//! Guest rx buffer notifications pull pending frames themselves; the pump
//! parks (stops watching the tap, which stays readable) on
//! [`RxStatus::NoBuffers`] and [`RxStatus::Inactive`], and the receive the
//! device makes on the guest's next notification wakes it through
//! [`WakeOnRecv`] (see [`rx_pump`]). A device made with
//! [`NetDevice::with_rx_pump`] has no such wake path: its parked pump looks
//! again every [`rx_pump::PARKED_RECHECK`].

pub mod backend;
pub mod device;
pub mod rx_pump;
pub mod tap;

pub use backend::{MemoryBackend, NetBackend, WakeOnRecv};
pub use device::{
    NetDevice, NetHost, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VIRTIO_ID_NET, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_STATUS, VNET_HDR_SIZE,
};
pub use rx_pump::{RxPump, RxStatus, RxWaker};
pub use tap::{Tap, TapError};
