//! The seam between a virtio device model and its transport.

use std::sync::Arc;

use virtio_queue::Queue;

use super::GuestMemoryHandle;
use crate::quiesce::Pausable;
use crate::snapshot::Snapshottable;

/// How a device raises interrupts and reports that it broke.
pub trait VirtioInterrupt: Send + Sync {
    /// The device put buffers in the used ring of `queue`.
    fn signal_queue(&self, queue: u16);
    /// The device configuration changed.
    fn signal_config(&self);
    /// The guest misbehaved in a way the device cannot recover from: the
    /// transport sets DEVICE_NEEDS_RESET, tells the guest and stops
    /// delivering notifications until the guest resets the device.
    fn set_needs_reset(&self, reason: &str);
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct ActivateContext {
    /// Guest memory.
    pub mem: GuestMemoryHandle,
    /// One entry per queue the device declared, in order; `None` for a queue
    /// the driver did not enable. Enabled queues have been checked against
    /// guest memory.
    pub queues: Vec<Option<Queue>>,
    /// Negotiated features.
    pub features: u64,
    /// Interrupt and error reporting handle.
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

impl ActivateContext {
    /// Takes queue `index` out of the context; `QueueMissing` if the driver
    /// did not enable it (or the device has no such queue).
    pub fn take_queue(&mut self, index: u16) -> Result<Queue, DeviceError> {
        self.take_optional_queue(index)
            .ok_or(DeviceError::QueueMissing(index))
    }

    /// Takes queue `index` out of the context, if the driver enabled it.
    pub fn take_optional_queue(&mut self, index: u16) -> Option<Queue> {
        self.queues
            .get_mut(usize::from(index))
            .and_then(Option::take)
    }
}

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A queue the device needs was not enabled by the driver.
    #[error("queue {0} is required but was not enabled")]
    QueueMissing(u16),
    /// The notified queue does not exist.
    #[error("no queue {0}")]
    NoSuchQueue(u16),
    /// The device is not activated.
    #[error("device not activated")]
    NotActivated,
    /// A queue operation failed because of the guest's ring contents.
    #[error("queue error: {0}")]
    Queue(#[from] super::queue::QueueError),
}

/// A virtio device model, independent of its transport. Every device can
/// be quiesced ([`Pausable`]: a paused device processes no queue and writes
/// no guest memory) and has a state hook ([`Snapshottable`]).
pub trait VirtioDevice: Send + Pausable + Snapshottable {
    /// Virtio device type (e.g. 19 for vsock).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Features the device offers (must include VIRTIO_F_VERSION_1).
    fn device_features(&self) -> u64;
    /// The features the driver accepted (a subset of the offer), at FEATURES_OK.
    fn ack_features(&mut self, features: u64);
    /// Reads the device-specific configuration at `offset`; bytes past its
    /// end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration at `offset`.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with the driver's queues.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError>;
    /// Stops the device and drops the queues (driver wrote status 0).
    fn reset(&mut self);
    /// The device's queue half: what serves a queue notification without
    /// the transport's lock, on the device worker thread (see
    /// [`super::worker`]). It shares the device's run state.
    fn queue_handler(&self) -> Arc<dyn QueueHandler>;
    /// The driver notified `queue`: served on the caller's thread (a
    /// transport without a worker, and tests).
    fn queue_notify(&mut self, queue: u16) -> Result<(), DeviceError> {
        self.queue_handler().handle_queue(queue)
    }
}

/// Serves queue notifications of one device. Implementations lock only the
/// device's own run state (never the transport's or the bus's), so that a
/// slow backend (a disk, a daemon) delays this device's queues and nothing
/// else.
pub trait QueueHandler: Send + Sync {
    /// The driver notified `queue`: process what it made available.
    fn handle_queue(&self, queue: u16) -> Result<(), DeviceError>;
}

/// Copies the window `[offset, offset + data.len())` of a device's
/// configuration bytes `config` into `data`; bytes past its end read as
/// zero. The common body of [`VirtioDevice::read_config`].
pub fn read_config_window(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = offset
            .checked_add(i as u64)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| config.get(o))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::read_config_window;

    #[test]
    fn config_window_reads_zero_past_the_end() {
        let config = [1u8, 2, 3, 4];
        let mut data = [0xffu8; 4];
        read_config_window(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0, 0]);
        read_config_window(&config, u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
    }
}
