//! The pause hook: how the VMM quiesces a device before it parks the guest
//! for good (pause, and later save) and wakes it again.
//!
//! A paused device processes no queue and writes no guest memory: guest
//! notifications that arrive meanwhile are kept and handled at resume
//! (the virtio-pci transport does that for every virtio device), and work
//! that starts on the host side (a frame on a tap, bytes on a vsock stream,
//! a SCSI hotplug event) waits in its backend. Devices driven only by vCPU
//! accesses (the 8250, the i8042, the ACPI blocks) have nothing to quiesce:
//! a parked vCPU drives nothing.
//!
//! The shape follows Cloud Hypervisor's `vm-migration::Pausable`: a pair of
//! calls the VMM makes on its control thread, after the vCPUs are parked
//! (pause) and before they run again (resume).

/// A device the VMM can quiesce.
pub trait Pausable {
    /// Stops all processing: from the return on, the device processes no
    /// queue and writes no guest memory until [`Pausable::resume`].
    fn pause(&mut self) -> Result<(), PauseError>;
    /// Lets the device work again and handles what arrived while paused.
    fn resume(&mut self) -> Result<(), PauseError>;
}

/// Why a device could not be paused or resumed.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// The device's out-of-process backend (a vhost-user daemon) did not
    /// stop or restart its rings.
    #[error("{device}: the backend refused to {action}: {detail}")]
    Backend {
        /// The device, for the log.
        device: String,
        /// "stop its rings" or "restart its rings".
        action: &'static str,
        /// What the backend said.
        detail: String,
    },
}
