//! [`VsockHost`]: the host's handle on a vsock device's connections: listen
//! for guest connections, connect to guest listeners, count, reset.
//!
//! It exists before the device does (a VMM can listen before the guest
//! boots) and outlives it: its [`VsockHost::backend`] is what a
//! [`super::VsockDevice`] is built on, and a new device can be built on the
//! same host handle (listeners survive; connections are reset).

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::backend::{BackendHandle, VsockBackend};
use super::muxer::{Muxer, MuxerError};
use super::stream::{Connect, HostListener};

/// Host side of a vsock device. Cheap to clone.
#[derive(Clone)]
pub struct VsockHost {
    muxer: Arc<Mutex<Muxer>>,
    wake: Arc<Notify>,
}

impl VsockHost {
    /// The host side of a guest with CID `guest_cid` (3 or more).
    pub fn new(guest_cid: u64) -> Self {
        let wake = Arc::new(Notify::new());
        VsockHost {
            muxer: Arc::new(Mutex::new(Muxer::new(guest_cid, wake.clone()))),
            wake,
        }
    }

    /// What a device is built on ([`super::VsockDevice::new`]).
    pub fn backend(&self) -> BackendHandle {
        BackendHandle {
            backend: self.muxer.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Listens on `port` (works before the guest driver is up).
    pub fn listen(&self, port: u32) -> Result<HostListener, MuxerError> {
        let rx = self.muxer.lock().listen(port)?;
        let muxer = Arc::downgrade(&self.muxer);
        Ok(HostListener::new(
            port,
            rx,
            Box::new(move || {
                if let Some(muxer) = muxer.upgrade() {
                    muxer.lock().unlisten(port);
                }
            }),
        ))
    }

    /// Connects to a guest listener on `port`. The returned future resolves
    /// when the guest answers (connection refused on RST, connection reset
    /// if the device is reset first). It waits for as long as the guest
    /// driver does not answer: wrap it in a timeout.
    pub fn connect(&self, port: u32) -> Result<Connect, MuxerError> {
        let stream = self.muxer.lock().connect(port)?;
        self.wake.notify_one();
        Ok(Connect::new(stream))
    }

    /// Live connections (for stats and tests).
    pub fn connection_count(&self) -> usize {
        self.muxer.lock().connection_count()
    }

    /// Resets every connection (their streams fail with
    /// `ConnectionReset`); listeners stay. For a VM that stopped.
    pub fn reset_connections(&self) {
        self.muxer.lock().reset();
    }
}
