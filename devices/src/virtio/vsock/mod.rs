//! virtio-vsock with an in-process host multiplexer (no vhost-vsock needed).
//!
//! The guest (CID from [`VsockHost::new`]) talks to the host (CID 2).
//! Files, from the guest's rings inwards: [`device`] moves packets between
//! the virtio queues and a [`VsockBackend`] ([`backend`]: the seam); the
//! [`muxer`] is that backend, routing packets to [`connection`]s and
//! listeners; [`stream`] holds what the host's code holds (streams,
//! listeners, pending connects); [`host`] is the host's handle ([`VsockHost`])
//! that creates them; [`packet`] is the wire header.
//!
//! ```ignore
//! let host = VsockHost::new(3);                           // listen before the device exists
//! let listener = host.listen(1024)?;
//! let device = VsockDevice::new(3, host.backend(), &runtime);
//! let function = VirtioPciDevice::new(Box::new(device), mem, msi, intx)?;
//! ```
//!
//! [`VsockHost::listen`] yields a [`HostListener`] whose `accept()` returns a
//! [`HostStream`] per guest connection; [`VsockHost::connect`] opens a stream
//! to a guest listener. Streams are tokio `AsyncRead + AsyncWrite + Send +
//! Unpin`, so a `Box<HostStream>` is a `uvm_api::VsockStream`.
//!
//! Flow control follows the virtio-vsock credit scheme: the host never sends
//! more than the guest's `buf_alloc - (tx_cnt - fwd_cnt)`, announces its own
//! consumption with CREDIT_UPDATE, and resets a guest that overruns it.
//!
//! # Bounds on what the guest can make the host hold
//!
//! Guest data waiting for the host's reader is bounded per connection by
//! the credit the host offers ([`connection::BUF_ALLOC`], 128 KiB) and per
//! VM by [`muxer::VM_BUFFER_BUDGET`] (16 MiB, see [`budget`]): credit is
//! only offered out of the budget, so the `buf_alloc` the guest sees is
//! space the host really has. When the budget is spent, new guest
//! connections get RST and open ones get no more credit; a guest that sends
//! past its credit is reset. Each listener holds at most
//! [`muxer::MAX_BACKLOG`] connections the host has not accepted yet; more
//! are refused with RST.

pub mod backend;
pub mod budget;
pub mod connection;
pub mod device;
pub mod host;
pub mod muxer;
pub mod packet;
pub mod stream;

pub use backend::{BackendHandle, SharedBackend, VsockBackend};
pub use device::{
    EVENT_QUEUE, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VIRTIO_ID_VSOCK, VsockDevice, VsockKick,
};
pub use host::VsockHost;
pub use muxer::MuxerError;
pub use stream::{Connect, HostListener, HostStream};
