//! The virtio-fs device model: configuration and queues are the device's,
//! the data plane is the vhost-user backend's.
//!
//! Which thread waits for the backend: nobody on a vCPU thread. Register
//! and configuration reads are answered from values taken at connect;
//! DRIVER_OK and reset queue their vhost-user round trips on the device's
//! setup thread ([`super::setup`]); queue notifications become writes to
//! the rings' kick eventfds on the device worker; pause and resume (the
//! VMM's control thread) make theirs directly. Every round trip is bounded
//! by the session's time limit ([`DEFAULT_TIMEOUT`] unless given).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::config::CONFIG_LEN;
use super::frontend::{Forward, FsFrontend};
use super::setup::SetupThread;
use super::{FsError, VIRTIO_ID_FS};
use crate::quiesce::{Pausable, PauseError};
use crate::snapshot::Snapshottable;
use crate::virtio::device::read_config_window;
use crate::virtio::{ActivateContext, DeviceError, QueueHandler, VirtioDevice};

/// How long a vhost-user request may stay unanswered before it fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A virtio-fs device (type 26) whose requests a vhost-user backend
/// (virtiofsd) serves. Queue 0 is the hiprio queue, queues 1..=N the
/// request queues.
///
/// Guest memory must be file-backed and mapped shared (one memfd), or
/// activation fails with [`FsError::AnonymousMemory`].
pub struct VhostUserFs {
    /// Declared first: dropped (its queued commands finished, joined)
    /// before the frontend stops the rings.
    setup: SetupThread,
    frontend: Arc<Mutex<FsFrontend>>,
    forward: Arc<Mutex<Forward>>,
    tag: String,
    features: u64,
    queue_sizes: Vec<u16>,
    config: [u8; CONFIG_LEN],
}

impl VhostUserFs {
    /// Connects to the backend listening on `socket_path` and negotiates a
    /// share named `tag` (1 to 36 bytes) with one hiprio queue and
    /// `num_request_queues` request queues of at most `queue_size`
    /// entries (a power of two); requests time out after
    /// [`DEFAULT_TIMEOUT`].
    pub fn connect(
        socket_path: &Path,
        tag: &str,
        num_request_queues: u16,
        queue_size: u16,
    ) -> Result<Self, FsError> {
        Self::connect_with_timeout(
            socket_path,
            tag,
            num_request_queues,
            queue_size,
            DEFAULT_TIMEOUT,
        )
    }

    /// [`VhostUserFs::connect`] with a time limit of `timeout` per
    /// vhost-user request.
    pub fn connect_with_timeout(
        socket_path: &Path,
        tag: &str,
        num_request_queues: u16,
        queue_size: u16,
        timeout: Duration,
    ) -> Result<Self, FsError> {
        let frontend =
            FsFrontend::connect(socket_path, tag, num_request_queues, queue_size, timeout)?;
        let forward = frontend.forward();
        let features = frontend.guest_features();
        let queue_sizes = frontend.queue_max_sizes();
        let config = frontend.config().to_bytes();
        let tag = frontend.tag().to_owned();
        let frontend = Arc::new(Mutex::new(frontend));
        let setup = SetupThread::spawn(frontend.clone())?;
        Ok(VhostUserFs {
            setup,
            frontend,
            forward,
            tag,
            features,
            queue_sizes,
            config,
        })
    }

    /// The tag the guest mounts the share by.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Waits until the set-up steps queued so far (activation, reset) are
    /// done: for tests and tools that drive the device by hand.
    pub fn settle(&self) {
        self.setup.settle();
    }

    /// Whether the device is activated (waits for a setup step under way).
    pub fn is_active(&self) -> bool {
        self.frontend.lock().is_active()
    }

    /// Whether the backend hung up while the device was active.
    pub fn backend_disconnected(&self) -> bool {
        self.frontend.lock().backend_disconnected()
    }

    /// Activates the device on the caller's thread, with a typed error
    /// (the transport's [`VirtioDevice::activate`] queues the same on the
    /// setup thread and reports a failure through `set_needs_reset`).
    pub fn try_activate(&mut self, ctx: ActivateContext) -> Result<(), FsError> {
        self.frontend.lock().try_activate(ctx)
    }
}

impl VirtioDevice for VhostUserFs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        self.queue_sizes.clone()
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn ack_features(&mut self, features: u64) {
        // The backend learns them at activation (SET_FEATURES), where the
        // transport passes them again.
        tracing::debug!(
            features = format_args!("{features:#x}"),
            "virtio-fs features acknowledged"
        );
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_window(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        crate::log_limited!(warn, offset, "virtio-fs configuration is read-only");
    }

    /// Queues the vhost-user set-up on the setup thread and returns: the
    /// device counts as activated for the transport, and a failure (or a
    /// backend that does not answer in time) marks it as needing a reset.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError> {
        self.setup.activate(ctx);
        Ok(())
    }

    fn reset(&mut self) {
        self.forward.lock().kicks = None;
        self.setup.reset();
    }

    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(FsQueues {
            forward: self.forward.clone(),
        })
    }
}

/// Forwards queue notifications to the backend's kick eventfds (the
/// worker's handler).
struct FsQueues {
    forward: Arc<Mutex<Forward>>,
}

impl QueueHandler for FsQueues {
    fn handle_queue(&self, queue: u16) -> Result<(), DeviceError> {
        let forward = self.forward.lock();
        let Some(kicks) = forward.kicks.as_ref() else {
            // Activation under way on the setup thread: its catch-up kick
            // covers this notification.
            tracing::debug!(queue, "virtio-fs rings not started yet");
            return Ok(());
        };
        if forward.paused {
            tracing::debug!(queue, "paused virtio-fs device does not kick its backend");
            return Ok(());
        }
        match kicks.get(usize::from(queue)) {
            None => Err(DeviceError::NoSuchQueue(queue)),
            Some(Some(kick)) => {
                if let Err(error) = kick.write(1) {
                    // Only a saturated counter fails, and then the backend
                    // has a kick pending anyway.
                    tracing::debug!(queue, %error, "virtio-fs kick not written");
                }
                Ok(())
            }
            Some(None) => {
                tracing::debug!(queue, "notification for a disabled virtio-fs queue");
                Ok(())
            }
        }
    }
}

impl Pausable for VhostUserFs {
    /// Stops every ring the backend runs (GET_VRING_BASE, which the backend
    /// answers once its ring worker is idle): from then on the daemon
    /// neither reads nor writes guest memory. This is what QEMU does to a
    /// vhost-user device when the VM stops. Waits for a set-up step under
    /// way (each bounded by the time limit).
    fn pause(&mut self) -> Result<(), PauseError> {
        self.frontend.lock().pause()
    }

    /// Restarts the stopped rings where the backend left them, with the
    /// same eventfds.
    fn resume(&mut self) -> Result<(), PauseError> {
        self.frontend.lock().resume()
    }
}

/// State capture comes with snapshots (and with a decision on how a
/// virtio-fs share survives a restore).
impl Snapshottable for VhostUserFs {}
