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
//! let dev = NetDevice::new(Box::new(tap), mac);
//! let host = dev.host();                        // keep: the rx pump's handle
//! let function = VirtioPciDevice::new(Box::new(dev), mem, msi, intx)?;
//! // event loop: when host.fd() is readable
//! match host.process_rx() { RxStatus::NoBuffers => /* wait for the guest */, _ => {} }
//! ```
//!
//! Guest rx buffer notifications pull pending frames themselves, so a VMM
//! that stops polling the fd on [`RxStatus::NoBuffers`] resumes by itself
//! once the guest posts buffers (the device drains the backend then).

pub mod backend;
pub mod device;
pub mod rx_pump;
pub mod tap;

pub use backend::{MemoryBackend, NetBackend};
pub use device::{
    NetDevice, NetHost, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VIRTIO_ID_NET, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_STATUS, VNET_HDR_SIZE,
};
pub use rx_pump::{RxPump, RxStatus};
pub use tap::{Tap, TapError};
