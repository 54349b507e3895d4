//! [`GuestEvents`]: what the guest's device accesses tell the control
//! thread, bounded whatever the guest does.
//!
//! The control channel is unbounded (commands of the async API must never
//! be refused), so nothing the guest can repeat at will may put one event
//! on it per access. Guest requests (power-off, reset, panic) all end the
//! run, so each kind is sent once: a guest writing pvpanic in a loop queues
//! one event. Ejects are collected in a pending bitmap of slots and one
//! wake-up ([`VmmEvent::GuestEjects`]) is queued while none is: the control
//! thread takes the whole bitmap ([`GuestEvents::take_ejects`]) when it
//! gets there. So the guest can queue at most four events in all, and the
//! vCPU thread never blocks or allocates to report one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use tokio::sync::mpsc::UnboundedSender;
use uvm_devices::acpi::pci_hotplug::EjectSink;
use uvm_devices::legacy::{GuestRequest, RequestSink};

use super::protocol::VmmEvent;

/// The guest-fed side of the control channel (see the module docs).
#[derive(Debug)]
pub struct GuestEvents {
    tx: UnboundedSender<VmmEvent>,
    /// Kinds of [`GuestRequest`] sent already (one bit each).
    requests_sent: AtomicU8,
    /// Slots ejected and not yet taken by the control thread.
    ejects: AtomicU32,
    /// Whether a [`VmmEvent::GuestEjects`] is queued and not yet handled.
    eject_wake: AtomicBool,
}

/// The bit of a request kind in `requests_sent`.
fn request_bit(request: GuestRequest) -> u8 {
    match request {
        GuestRequest::PowerOff => 1,
        GuestRequest::Reset => 2,
        GuestRequest::Panic => 4,
    }
}

impl GuestEvents {
    /// Guest events reported on `tx`.
    pub fn new(tx: UnboundedSender<VmmEvent>) -> Arc<Self> {
        Arc::new(GuestEvents {
            tx,
            requests_sent: AtomicU8::new(0),
            ejects: AtomicU32::new(0),
            eject_wake: AtomicBool::new(false),
        })
    }

    /// Reports `request`, unless one of its kind was reported already.
    pub fn request(&self, request: GuestRequest) {
        let bit = request_bit(request);
        if self.requests_sent.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return;
        }
        let _ = self.tx.send(VmmEvent::Guest(request));
    }

    /// Reports that the guest ejected `slot` (0..=31; others are ignored).
    pub fn eject(&self, slot: u8) {
        let Some(bit) = 1u32.checked_shl(u32::from(slot)) else {
            return;
        };
        self.ejects.fetch_or(bit, Ordering::AcqRel);
        if !self.eject_wake.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(VmmEvent::GuestEjects);
        }
    }

    /// The control thread, on [`VmmEvent::GuestEjects`]: takes the slots
    /// ejected since the last call (bitmap). An eject reported while or
    /// after this runs queues a new wake-up, so none is lost.
    pub fn take_ejects(&self) -> u32 {
        self.eject_wake.store(false, Ordering::Release);
        self.ejects.swap(0, Ordering::AcqRel)
    }

    /// A [`RequestSink`] for the platform devices.
    pub fn request_sink(self: &Arc<Self>) -> RequestSink {
        let events = self.clone();
        Arc::new(move |r| events.request(r))
    }

    /// An [`EjectSink`] for the PCI hotplug block.
    pub fn eject_sink(self: &Arc<Self>) -> EjectSink {
        let events = self.clone();
        Arc::new(move |slot| events.eject(slot))
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;

    #[test]
    fn ejects_coalesce_and_none_is_lost() {
        let (tx, mut rx) = unbounded_channel();
        let events = GuestEvents::new(tx);
        for slot in 0..40 {
            events.eject(slot);
        }
        assert_eq!(rx.len(), 1);
        assert!(matches!(rx.try_recv(), Ok(VmmEvent::GuestEjects)));
        assert_eq!(events.take_ejects(), u32::MAX);
        assert_eq!(events.take_ejects(), 0);
        events.eject(3);
        assert!(matches!(rx.try_recv(), Ok(VmmEvent::GuestEjects)));
        assert_eq!(events.take_ejects(), 1 << 3);
    }

    #[test]
    fn each_request_kind_is_sent_once() {
        let (tx, mut rx) = unbounded_channel();
        let events = GuestEvents::new(tx);
        let sink = events.request_sink();
        for _ in 0..100 {
            sink(GuestRequest::Panic);
            sink(GuestRequest::PowerOff);
        }
        assert_eq!(rx.len(), 2);
        assert!(matches!(
            rx.try_recv(),
            Ok(VmmEvent::Guest(GuestRequest::Panic))
        ));
    }
}
