//! The common configuration structure (`struct virtio_pci_common_cfg`):
//! feature negotiation, device status and queue set-up.

use super::interrupts::{InterruptState, NO_VECTOR};
use crate::pci::{le_read, le_write};

/// One queue as the driver configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueConfig {
    /// Maximum size offered by the device.
    pub max_size: u16,
    /// Size chosen by the driver.
    pub size: u16,
    /// Whether the driver enabled the queue.
    pub enabled: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Available (driver) ring address.
    pub avail: u64,
    /// Used (device) ring address.
    pub used: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        QueueConfig {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            avail: 0,
            used: 0,
        }
    }
}

/// What a common-configuration write asks the transport to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonAction {
    /// Nothing beyond the register update.
    None,
    /// The driver wrote this status value (the transport runs the state machine).
    Status(u8),
}

/// Registers of the common configuration (also what a snapshot keeps of
/// them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommonCfg {
    /// Device feature select.
    pub device_feature_select: u32,
    /// Driver feature select.
    pub driver_feature_select: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// Device status.
    pub status: u8,
    /// Configuration generation.
    pub config_generation: u8,
    /// Selected queue.
    pub queue_select: u16,
    /// Per-queue configuration.
    pub queues: Vec<QueueConfig>,
}

fn set_half(value: &mut u64, offset: u64, len: usize, data: &[u8]) {
    // `offset` is relative to the 64-bit field; 4-byte halves or the full 8 bytes.
    let shift = 8 * offset;
    let mask = if len >= 8 {
        u64::MAX
    } else {
        ((1u64 << (8 * len)) - 1) << shift
    };
    *value = (*value & !mask) | ((le_read(data) << shift) & mask);
}

impl CommonCfg {
    /// Registers after reset, for queues of these maximum sizes.
    pub fn new(queue_max_sizes: &[u16]) -> Self {
        CommonCfg {
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            queues: queue_max_sizes
                .iter()
                .map(|m| QueueConfig::new(*m))
                .collect(),
        }
    }

    /// Takes the registers of `saved` (a snapshot's), if they fit these
    /// queues: as many, with the same maximum sizes, each size a power of
    /// two within its maximum. On an error nothing changes.
    pub fn restore(&mut self, saved: &CommonCfg) -> Result<(), String> {
        if saved.queues.len() != self.queues.len() {
            return Err(format!(
                "{} queues saved, the device has {}",
                saved.queues.len(),
                self.queues.len()
            ));
        }
        for (i, (q, mine)) in saved.queues.iter().zip(&self.queues).enumerate() {
            if q.max_size != mine.max_size || !q.size.is_power_of_two() || q.size > q.max_size {
                return Err(format!(
                    "queue {i}: size {} of at most {} saved, the device offers {}",
                    q.size, q.max_size, mine.max_size
                ));
            }
        }
        *self = saved.clone();
        Ok(())
    }

    /// Back to the reset state (the generation counter keeps counting).
    pub fn reset(&mut self) {
        let gen_count = self.config_generation;
        let sizes: Vec<u16> = self.queues.iter().map(|q| q.max_size).collect();
        *self = CommonCfg::new(&sizes);
        self.config_generation = gen_count;
    }

    fn selected(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// A register read. `device_features` is the device's offer and `status`
    /// the status to report (with DEVICE_NEEDS_RESET folded in).
    pub fn read(
        &self,
        offset: u64,
        data: &mut [u8],
        device_features: u64,
        status: u8,
        irq: &InterruptState,
    ) {
        let q = self.selected();
        let qv = irq
            .queue_vectors
            .get(usize::from(self.queue_select))
            .copied()
            .unwrap_or(NO_VECTOR);
        let (base, value): (u64, u64) = match offset {
            0x00..0x04 => (0x00, u64::from(self.device_feature_select)),
            0x04..0x08 => (
                0x04,
                match self.device_feature_select {
                    0 => device_features & 0xffff_ffff,
                    1 => device_features >> 32,
                    _ => 0,
                },
            ),
            0x08..0x0c => (0x08, u64::from(self.driver_feature_select)),
            0x0c..0x10 => (
                0x0c,
                match self.driver_feature_select {
                    0 => self.driver_features & 0xffff_ffff,
                    1 => self.driver_features >> 32,
                    _ => 0,
                },
            ),
            0x10..0x12 => (0x10, u64::from(irq.config_vector)),
            0x12..0x14 => (0x12, self.queues.len() as u64),
            0x14 => (0x14, u64::from(status)),
            0x15 => (0x15, u64::from(self.config_generation)),
            0x16..0x18 => (0x16, u64::from(self.queue_select)),
            0x18..0x1a => (0x18, q.map_or(0, |q| u64::from(q.size))),
            0x1a..0x1c => (0x1a, u64::from(if q.is_some() { qv } else { NO_VECTOR })),
            0x1c..0x1e => (0x1c, q.map_or(0, |q| u64::from(q.enabled))),
            0x1e..0x20 => (0x1e, q.map_or(0, |_| u64::from(self.queue_select))),
            0x20..0x28 => (0x20, q.map_or(0, |q| q.desc)),
            0x28..0x30 => (0x28, q.map_or(0, |q| q.avail)),
            0x30..0x38 => (0x30, q.map_or(0, |q| q.used)),
            _ => {
                data.fill(0);
                return;
            }
        };
        le_write(data, value >> (8 * (offset - base)));
    }

    /// A register write; returns what the transport must do next.
    /// `vectors` is the MSI-X table size (out-of-range vectors read back as
    /// NO_VECTOR, which is how the driver learns a vector was refused).
    pub fn write(&mut self, offset: u64, data: &[u8], irq: &mut InterruptState) -> CommonAction {
        let value = le_read(data);
        let vectors = irq.msix.vectors();
        let check_vector = |v: u64| {
            let v = v as u16;
            if v < vectors { v } else { NO_VECTOR }
        };
        let live = self.status & super::super::status::DRIVER_OK != 0;
        let negotiated = self.status & super::super::status::FEATURES_OK != 0;
        let qs = usize::from(self.queue_select);
        match offset {
            0x00 => self.device_feature_select = value as u32,
            0x08 => self.driver_feature_select = value as u32,
            // The device acted on the features at FEATURES_OK; they stay
            // until a reset (virtio 1.x 3.1.1: the driver MUST NOT change
            // them after setting FEATURES_OK).
            0x0c if negotiated => {
                tracing::debug!("driver feature write after FEATURES_OK ignored");
            }
            0x0c => match self.driver_feature_select {
                0 => {
                    self.driver_features =
                        (self.driver_features & !0xffff_ffff) | (value & 0xffff_ffff)
                }
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | ((value & 0xffff_ffff) << 32)
                }
                _ => tracing::debug!(
                    select = self.driver_feature_select,
                    "ignoring driver features beyond bit 63"
                ),
            },
            0x10 => irq.config_vector = check_vector(value),
            0x14 => return CommonAction::Status(value as u8),
            0x16 => self.queue_select = value as u16,
            0x1a => {
                if let Some(v) = irq.queue_vectors.get_mut(qs) {
                    *v = check_vector(value);
                }
            }
            _ if live && (0x18..0x38).contains(&offset) => {
                crate::log_limited!(warn, offset, "queue set-up write after DRIVER_OK ignored");
            }
            0x18 => {
                if let Some(q) = self.queues.get_mut(qs) {
                    let size = value as u16;
                    if size.is_power_of_two() && size <= q.max_size {
                        q.size = size;
                    } else {
                        crate::log_limited!(
                            warn,
                            size,
                            max = q.max_size,
                            "invalid queue size ignored"
                        );
                    }
                }
            }
            0x1c => {
                if let Some(q) = self.queues.get_mut(qs) {
                    if value == 1 {
                        q.enabled = true;
                    } else {
                        crate::log_limited!(warn, value, "queue_enable only accepts 1");
                    }
                }
            }
            0x20..0x38 => {
                if let Some(q) = self.queues.get_mut(qs) {
                    let (field, base) = match offset {
                        0x20..0x28 => (&mut q.desc, 0x20),
                        0x28..0x30 => (&mut q.avail, 0x28),
                        _ => (&mut q.used, 0x30),
                    };
                    if (offset - base).is_multiple_of(4) && (data.len() == 4 || data.len() == 8) {
                        set_half(field, offset - base, data.len(), data);
                    } else {
                        tracing::debug!(offset, "ignoring odd-sized queue address write");
                    }
                }
            }
            _ => tracing::debug!(offset, "write to read-only or unknown common cfg register"),
        }
        CommonAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_takes_only_registers_that_fit_the_queues() {
        let mut saved = CommonCfg::new(&[256, 128]);
        saved.status = 0x0f;
        saved.driver_features = 1 << 32;
        saved.queues[1].size = 64;
        saved.queues[1].enabled = true;
        saved.queues[1].desc = 0x1000;
        let mut fresh = CommonCfg::new(&[256, 128]);
        fresh.restore(&saved).unwrap();
        assert_eq!(fresh, saved);

        let mut other = CommonCfg::new(&[256, 128, 128]);
        assert!(other.restore(&saved).is_err(), "another queue count");
        let mut smaller = CommonCfg::new(&[256, 64]);
        assert!(smaller.restore(&saved).is_err(), "another maximum size");
        let mut bad = saved.clone();
        bad.queues[0].size = 100;
        let mut target = CommonCfg::new(&[256, 128]);
        assert!(
            target.restore(&bad).is_err(),
            "a size that is no power of two"
        );
        assert_eq!(target, CommonCfg::new(&[256, 128]), "nothing changed");
    }
}
