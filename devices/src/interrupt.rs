//! Interrupt lines as the device models see them.
//!
//! A device never talks to KVM: it holds an [`IrqLine`] (a legacy, edge
//! triggered GSI such as the serial port's IRQ 4 or the ACPI SCI) or an
//! [`MsiSink`] (message-signalled interrupts of PCI functions). The backend
//! implements them with irqfds; tests implement them with counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// An edge-triggered legacy interrupt line.
pub trait IrqLine: Send + Sync {
    /// Raises the interrupt once.
    fn trigger(&self) -> std::io::Result<()>;
}

/// Delivers message-signalled interrupts.
pub trait MsiSink: Send + Sync {
    /// Sends one MSI with this address and data (as programmed by the guest).
    fn signal(&self, address: u64, data: u32) -> std::io::Result<()>;
}

/// An [`IrqLine`] that counts triggers, for tests.
#[derive(Debug, Default)]
pub struct CountingIrq {
    count: AtomicU64,
}

impl CountingIrq {
    /// How many times the line was triggered.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl IrqLine for CountingIrq {
    fn trigger(&self) -> std::io::Result<()> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// An [`IrqLine`] that does nothing, for devices whose interrupt is not wired.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn trigger(&self) -> std::io::Result<()> {
        Ok(())
    }
}
