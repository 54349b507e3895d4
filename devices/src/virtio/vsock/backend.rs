//! The seam between the virtio-vsock device and its host side.
//!
//! The device moves packets between the guest's queues and a
//! [`VsockBackend`]; it knows nothing of connections, listeners or host
//! streams. The backend wakes the device through the [`Notify`] of its
//! [`BackendHandle`] when it has something for the guest (a host write, a
//! connect, a credit update). Firecracker's `VsockBackend` (the device's
//! view of its Unix-socket muxer) is the reference for this split; here
//! the in-process [`super::muxer::Muxer`] implements it.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::packet::Header;

/// The host side of a vsock device.
pub trait VsockBackend: Send {
    /// Handles one packet the guest sent (a well-formed header and its payload).
    fn handle_packet(&mut self, header: &Header, payload: Vec<u8>);
    /// Answers a packet whose header does not match its buffers (resets its
    /// connection, or replies RST).
    fn reject(&mut self, header: &Header);
    /// Whether a packet may be waiting for the guest.
    fn has_pending(&self) -> bool;
    /// The next packet for the guest, with at most `max_payload` bytes of payload.
    fn next_packet(&mut self, max_payload: usize) -> Option<(Header, Vec<u8>)>;
    /// The driver reset the device: every connection is reset.
    fn reset(&mut self);
}

/// A backend shared between the device and the host handle.
pub type SharedBackend = Arc<Mutex<dyn VsockBackend>>;

/// What a device needs of its backend: the backend, and the notification
/// the backend raises when it has packets for the guest.
#[derive(Clone)]
pub struct BackendHandle {
    /// The backend.
    pub backend: SharedBackend,
    /// Raised by the backend when the device should look for packets.
    pub wake: Arc<Notify>,
}
