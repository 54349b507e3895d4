//! Virtio devices and their virtio-pci (1.x, "modern") transport.
//!
//! A device model implements [`VirtioDevice`]; the transport
//! ([`pci_transport::VirtioPciDevice`]) makes it a PCI function the root bus
//! ([`crate::pci::PciRoot`]) can hold. Interrupts leave through
//! [`VirtioInterrupt`], which the transport implements with MSI-X (through
//! an [`crate::interrupt::MsiSink`]) or legacy INTx plus the ISR register
//! (through an [`crate::interrupt::IrqLine`]). Queue work goes through the
//! device's [`QueueHandler`], which the transport runs on a device worker
//! ([`worker`]) when the VMM gives it an ioeventfd registry.

pub mod chain_io;
pub mod device;
pub mod fs;
pub mod net;
pub mod pci_transport;
pub mod pmem;
pub mod queue;
pub mod running;
pub mod scsi;
pub mod vsock;
pub mod worker;

pub use device::{
    ActivateContext, DeviceError, QueueHandler, VirtioDevice, VirtioInterrupt, read_config_window,
};
pub use queue::wants_interrupt;
pub use running::{Activation, ProcessError, Running, drain, fill_then_notify};

/// Guest memory as the virtio devices see it.
pub type GuestMemory = vm_memory::GuestMemoryMmap;
/// Guest memory that the VMM may swap (memory hotplug) between activations.
pub type GuestMemoryHandle = vm_memory::GuestMemoryAtomic<GuestMemory>;

/// Feature bit: the device complies with virtio 1.x (required by the transport).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit 29 (`VIRTIO_F_EVENT_IDX`): the driver and the device say
/// where in the ring they next want a kick or an interrupt. The transport
/// offers it for every device: the queue helpers ([`queue`]) publish the
/// device's `avail_event` and honour the driver's `used_event`.
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;

/// Device status bits (virtio 1.x section 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready to drive the device.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}
