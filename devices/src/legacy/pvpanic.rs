//! The pvpanic ISA device (QEMU's `pvpanic`, ACPI id `QEMU0001`) at port
//! `0x505`: a guest kernel with the pvpanic driver writes bit 0 (panicked)
//! there when it panics. Reads return the supported events.
//!
//! Debian's cloud kernel builds the driver (`pvpanic-mmio`, which also
//! drives the port form) as a module that the test initramfs does not
//! load, so for that guest the VMM also watches the console for the
//! kernel's panic line (see the backend's docs).

use crate::bus::BusDevice;
use crate::legacy::{GuestRequest, RequestSink};

/// The pvpanic port.
pub const PVPANIC_PORT: u64 = 0x505;
/// Event bit: the guest panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// Event bit: a crash kernel was loaded (informational only).
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;

/// The pvpanic device.
pub struct PvPanic {
    requests: RequestSink,
}

impl PvPanic {
    /// A pvpanic device reporting panics through `requests`.
    pub fn new(requests: RequestSink) -> Self {
        PvPanic { requests }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (0, Some(first)) = (offset, data.first_mut()) {
            *first = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        if offset != 0 {
            return;
        }
        if value & PVPANIC_PANICKED != 0 {
            (self.requests)(GuestRequest::Panic);
        } else if value & PVPANIC_CRASH_LOADED != 0 {
            crate::log_limited!(info, "pvpanic: the guest reports a crash kernel is loaded");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn panicked_bit_reports_a_panic() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut dev = PvPanic::new(Arc::new(move |r| sink.lock().unwrap().push(r)));
        let mut b = [0u8];
        dev.read(0, &mut b);
        assert_eq!(b[0], 3);
        dev.write(0, &[PVPANIC_CRASH_LOADED]);
        assert!(seen.lock().unwrap().is_empty());
        dev.write(0, &[PVPANIC_PANICKED]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Panic]);
    }
}
