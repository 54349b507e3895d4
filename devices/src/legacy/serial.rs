//! The 8250/16550 UART at COM1 (`0x3f8`, IRQ 4), over `vm-superio`.
//!
//! Bytes the guest transmits go to an output sink (any `Write`); the
//! interrupt goes to an [`IrqLine`]. Input is not wired yet (the console is
//! output-only).

use std::io::Write;
use std::sync::Arc;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial as Uart, Trigger};

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;

/// The base port of COM1.
pub const COM1_BASE: u64 = 0x3f8;
/// The number of ports a UART decodes.
pub const UART_PORTS: u64 = 8;
/// The legacy IRQ of COM1.
pub const COM1_IRQ: u32 = 4;

/// Adapts an [`IrqLine`] to `vm-superio`'s trigger trait.
pub struct IrqTrigger(pub Arc<dyn IrqLine>);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.trigger()
    }
}

/// The output of a [`Serial`] device.
pub type SerialOutput = Box<dyn Write + Send>;

/// A 16550 UART as a bus device.
pub struct Serial {
    uart: Uart<IrqTrigger, NoEvents, SerialOutput>,
}

impl Serial {
    /// A UART raising `irq` and writing transmitted bytes to `out`.
    pub fn new(irq: Arc<dyn IrqLine>, out: SerialOutput) -> Self {
        Serial {
            uart: Uart::new(IrqTrigger(irq), out),
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data) {
            (Ok(offset), [byte]) if u64::from(offset) < UART_PORTS => {
                *byte = self.uart.read(offset);
            }
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data)
            && u64::from(offset) < UART_PORTS
            && let Err(e) = self.uart.write(offset, *byte)
        {
            crate::log_limited!(warn, "serial: write of {byte:#x} at offset {offset}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::interrupt::CountingIrq;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmitted_bytes_reach_the_sink_and_raise_the_irq() {
        let out = Shared::default();
        let irq = Arc::new(CountingIrq::default());
        let mut serial = Serial::new(irq.clone(), Box::new(out.clone()));
        // Enable the transmitter-empty interrupt (IER bit 1).
        serial.write(1, &[0x02]);
        for b in b"hi\n" {
            serial.write(0, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");
        assert!(irq.count() >= 1, "THR empty interrupt");
        // The line status register reports the transmitter empty.
        let mut lsr = [0u8];
        serial.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
        // Wide or out-of-range accesses are ignored.
        let mut wide = [0u8; 2];
        serial.read(0, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
        serial.write(9, b"x");
        assert_eq!(out.0.lock().unwrap().len(), 3);
    }
}
