//! virtio-vsock with an in-process host multiplexer (no vhost-vsock needed).
//!
//! The guest (CID from [`VsockDevice::new`]) talks to the host (CID 2).
//! [`VsockHost::listen`] yields a [`HostListener`] whose `accept()` returns a
//! [`HostStream`] per guest connection; [`VsockHost::connect`] opens a stream
//! to a guest listener. Streams are tokio `AsyncRead + AsyncWrite + Send +
//! Unpin`, so a `Box<HostStream>` is a `uvm_api::VsockStream`.
//!
//! Flow control follows the virtio-vsock credit scheme: the host never sends
//! more than the guest's `buf_alloc - (tx_cnt - fwd_cnt)`, announces its own
//! consumption with CREDIT_UPDATE, and resets a guest that overruns it.

pub mod connection;
pub mod device;
pub mod muxer;
pub mod packet;
pub mod stream;

pub use device::{
    EVENT_QUEUE, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VIRTIO_ID_VSOCK, VsockDevice, VsockHost,
};
pub use muxer::MuxerError;
pub use stream::{Connect, HostListener, HostStream};
