//! Legacy PC devices on the port I/O bus: the 8250 serial console
//! ([`serial`]), the i8042 keyboard controller's reset line ([`i8042`]), the
//! QEMU-compatible pvpanic port ([`pvpanic`]) and a CMOS/RTC stub ([`cmos`]).
//!
//! Devices that end the guest's run (reset, panic; the ACPI PM block's S5
//! too) report it through a [`RequestSink`] as a [`GuestRequest`]; the VMM
//! decides what to do with it.

use std::sync::Arc;

pub mod cmos;
pub mod i8042;
pub mod pvpanic;
pub mod serial;

/// Something the guest asked for through a device that ends its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestRequest {
    /// Power off (ACPI S5).
    PowerOff,
    /// Reset the machine (i8042 pulse or the FADT reset register).
    Reset,
    /// The guest kernel panicked (pvpanic, or a panic line on the console).
    Panic,
}

/// Receives [`GuestRequest`]s; the VMM implements it with a channel.
pub type RequestSink = Arc<dyn Fn(GuestRequest) + Send + Sync>;

/// A sink that drops every request, for tests and unwired devices.
pub fn ignore_requests() -> RequestSink {
    Arc::new(|_| {})
}
