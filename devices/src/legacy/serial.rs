//! The 8250/16550 UART at COM1 (`0x3f8`, IRQ 4), over `vm-superio`.
//!
//! Bytes the guest transmits go to an output sink (any `Write`); the
//! interrupt goes to an [`IrqLine`]. Input is not wired yet (the console is
//! output-only).
//!
//! # Batched transmission
//!
//! Linux writes its console with the transmitter-empty interrupt off,
//! polling: for each byte one read of the line status register, then one
//! write of the byte (`serial8250_console_putchar()` in
//! `drivers/tty/serial/8250/8250_port.c`). A hypervisor may hold such byte
//! writes in a buffer instead of exiting for each and hand them over at the
//! next exit: the status read that comes before the next byte is one, so
//! nothing is reordered and no byte waits long. That is only sound while
//! the guest does not wait for the transmitter-empty interrupt, which a
//! held write would delay until some unrelated exit: the tty layer's
//! interrupt-driven transmission (`IER.THRI` set) does wait for it. A
//! [`TransmitBatching`] given to [`Serial::with_batching`] is therefore told
//! whenever `IER.THRI` changes.

use std::io::Write;
use std::sync::Arc;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial as Uart, SerialState, Trigger};

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;
use crate::snapshot::{DeviceState, Snapshottable, StateError};

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

/// The transmit holding register's offset (a write; the divisor latch's
/// low byte while `LCR.DLAB` is set).
pub const THR_OFFSET: u64 = 0;
/// The interrupt enable register's offset (while `LCR.DLAB` is clear).
const IER_OFFSET: u8 = 1;
/// The line control register's offset.
const LCR_OFFSET: u8 = 3;
/// `IER` bit 1: interrupt when the transmit holding register is empty.
const IER_THRI: u8 = 0x02;
/// `LCR` bit 7: offsets 0 and 1 address the divisor latch.
const LCR_DLAB: u8 = 0x80;

/// Whether writes to the transmit holding register may be batched (see
/// the module docs): told at construction (yes: the interrupt is off at
/// reset) and whenever the guest turns the transmitter-empty interrupt on
/// (no) or off (yes).
pub trait TransmitBatching: Send + Sync {
    /// `allowed`: the guest does not wait for the transmitter-empty
    /// interrupt, so its byte writes may be held until its next exit.
    /// Called on the vCPU thread making the change, before the write takes
    /// effect when batching stops and after it when batching resumes.
    fn set_allowed(&self, allowed: bool);
}

/// The kind and version of the UART state in a snapshot.
const STATE_KIND: &str = "serial-16550";
const STATE_VERSION: u32 = 1;
/// Bytes the UART's receive FIFO holds (`vm-superio` refuses more).
const FIFO_SIZE: usize = 64;

/// What a snapshot keeps of the UART: its registers and the bytes in its
/// receive FIFO, `vm-superio`'s own state described for serde.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(remote = "SerialState")]
struct UartState {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

/// The UART's state as a snapshot stores it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedUart(#[serde(with = "UartState")] SerialState);

/// A 16550 UART as a bus device.
pub struct Serial {
    uart: Uart<IrqTrigger, NoEvents, SerialOutput>,
    /// The interrupt line (kept to rebuild the UART at restore).
    irq: Arc<dyn IrqLine>,
    batching: Option<Arc<dyn TransmitBatching>>,
    /// The last value the guest wrote to `LCR` (for `DLAB`).
    lcr: u8,
    /// Whether the guest has `IER.THRI` set.
    thri: bool,
}

impl Serial {
    /// A UART raising `irq` and writing transmitted bytes to `out`.
    pub fn new(irq: Arc<dyn IrqLine>, out: SerialOutput) -> Self {
        Serial {
            uart: Uart::new(IrqTrigger(irq.clone()), out),
            irq,
            batching: None,
            lcr: 0,
            thri: false,
        }
    }

    /// Like [`Serial::new`], telling `batching` when byte writes may be
    /// batched (it is told `true` now).
    pub fn with_batching(
        irq: Arc<dyn IrqLine>,
        out: SerialOutput,
        batching: Arc<dyn TransmitBatching>,
    ) -> Self {
        batching.set_allowed(true);
        Serial {
            batching: Some(batching),
            ..Serial::new(irq, out)
        }
    }

    /// The `IER.THRI` a write of `byte` at `offset` leaves, if it changes it.
    fn thri_change(&self, offset: u8, byte: u8) -> Option<bool> {
        let thri = byte & IER_THRI != 0;
        (offset == IER_OFFSET && self.lcr & LCR_DLAB == 0 && thri != self.thri).then_some(thri)
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
        let (Ok(offset), [byte]) = (u8::try_from(offset), data) else {
            return;
        };
        if u64::from(offset) >= UART_PORTS {
            return;
        }
        let change = self.thri_change(offset, *byte);
        if change == Some(true)
            && let Some(batching) = &self.batching
        {
            batching.set_allowed(false);
        }
        if let Err(e) = self.uart.write(offset, *byte) {
            crate::log_limited!(warn, "serial: write of {byte:#x} at offset {offset}: {e}");
        }
        if offset == LCR_OFFSET {
            self.lcr = *byte;
        }
        if let Some(thri) = change {
            self.thri = thri;
            if !thri && let Some(batching) = &self.batching {
                batching.set_allowed(true);
            }
        }
    }
}

impl Snapshottable for Serial {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        DeviceState::new(STATE_KIND, STATE_VERSION, &SavedUart(self.uart.state()))
    }

    /// Rebuilds the UART from the state around the same output and
    /// interrupt line, and tells the batching hook what the restored
    /// `IER.THRI` allows.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let SavedUart(state) = state.decode(STATE_KIND, STATE_VERSION)?;
        if state.in_buffer.len() > FIFO_SIZE {
            return Err(StateError::Invalid(format!(
                "{} bytes in a receive FIFO of {FIFO_SIZE}",
                state.in_buffer.len()
            )));
        }
        let (lcr, thri) = (state.line_control, state.interrupt_enable & IER_THRI != 0);
        let placeholder = Uart::new(
            IrqTrigger(self.irq.clone()),
            Box::new(std::io::sink()) as SerialOutput,
        );
        let out = std::mem::replace(&mut self.uart, placeholder).into_writer();
        // The FIFO length is the only thing `from_state` checks, and it
        // was checked above; a failure here would lose the output sink.
        self.uart = Uart::from_state(&state, IrqTrigger(self.irq.clone()), NoEvents, out)
            .map_err(|e| StateError::Invalid(format!("UART state: {e:?}")))?;
        self.lcr = lcr;
        self.thri = thri;
        if let Some(batching) = &self.batching {
            batching.set_allowed(!thri);
        }
        Ok(())
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

    /// Records every `set_allowed`.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<bool>>);

    impl TransmitBatching for Recorder {
        fn set_allowed(&self, allowed: bool) {
            self.0.lock().unwrap().push(allowed);
        }
    }

    #[test]
    fn batching_follows_the_transmitter_empty_interrupt() {
        let out = Shared::default();
        let recorder = Arc::new(Recorder::default());
        let mut serial = Serial::with_batching(
            Arc::new(CountingIrq::default()),
            Box::new(out.clone()),
            recorder.clone(),
        );
        let calls = || recorder.0.lock().unwrap().clone();
        assert_eq!(calls(), [true], "allowed at reset");
        // What `serial8250_console_write()` does around a polled line:
        // receive interrupts on and off, THRI untouched.
        serial.write(1, &[0x05]);
        serial.write(0, b"x");
        serial.write(1, &[0x00]);
        assert_eq!(calls(), [true], "no THRI change, no call");
        // The tty layer starts interrupt-driven transmission, then stops it.
        serial.write(1, &[0x07]);
        serial.write(1, &[0x07]);
        serial.write(1, &[0x05]);
        assert_eq!(calls(), [true, false, true]);
        // With DLAB set, offset 1 is the divisor latch's high byte.
        serial.write(3, &[0x83]);
        serial.write(1, &[0x02]);
        serial.write(3, &[0x03]);
        assert_eq!(calls(), [true, false, true], "a divisor write is not IER");
        // Without a batching hook nothing is told, and nothing breaks.
        let mut plain = Serial::new(Arc::new(CountingIrq::default()), Box::new(out.clone()));
        plain.write(1, &[0x02]);
        assert_eq!(out.0.lock().unwrap().as_slice(), b"x");
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

    #[test]
    fn state_carries_the_registers_to_a_fresh_uart_on_the_same_output() {
        let out = Shared::default();
        let mut serial = Serial::new(Arc::new(CountingIrq::default()), Box::new(out.clone()));
        serial.write(3, &[0x83]); // DLAB on
        serial.write(0, &[0x0c]); // divisor 12: 9600 baud
        serial.write(3, &[0x03]); // 8N1, DLAB off
        serial.write(7, &[0x5a]); // scratch
        serial.write(1, &[0x02]); // THRI on
        let state = serial.save_state().unwrap();

        let recorder = Arc::new(Recorder::default());
        let fresh_out = Shared::default();
        let mut fresh = Serial::with_batching(
            Arc::new(CountingIrq::default()),
            Box::new(fresh_out.clone()),
            recorder.clone(),
        );
        fresh.restore_state(&state).unwrap();
        let read = |s: &mut Serial, offset| {
            let mut b = [0u8];
            s.read(offset, &mut b);
            b[0]
        };
        assert_eq!(read(&mut fresh, 7), 0x5a, "scratch");
        assert_eq!(read(&mut fresh, 3), 0x03, "line control");
        assert_eq!(read(&mut fresh, 1), 0x02, "interrupt enable");
        fresh.write(3, &[0x83]);
        assert_eq!(read(&mut fresh, 0), 0x0c, "divisor latch");
        fresh.write(3, &[0x03]);
        fresh.write(0, b"z");
        assert_eq!(fresh_out.0.lock().unwrap().as_slice(), b"z", "same sink");
        assert_eq!(
            recorder.0.lock().unwrap().as_slice(),
            [true, false],
            "batching stops: the restored guest waits for THRI"
        );
    }

    #[test]
    fn an_overfull_fifo_state_is_refused_and_the_uart_keeps_working() {
        let out = Shared::default();
        let mut serial = Serial::new(Arc::new(CountingIrq::default()), Box::new(out.clone()));
        let mut bad = serial.uart.state();
        bad.in_buffer = vec![b'x'; FIFO_SIZE + 1];
        let bad = DeviceState::new(STATE_KIND, STATE_VERSION, &SavedUart(bad)).unwrap();
        assert!(matches!(
            serial.restore_state(&bad),
            Err(StateError::Invalid(_))
        ));
        serial.write(0, b"k");
        assert_eq!(out.0.lock().unwrap().as_slice(), b"k");
    }
}
