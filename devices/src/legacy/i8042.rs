//! The i8042 keyboard controller, only as far as the reset line: the guest
//! writes `0xfe` (pulse the reset line) to the command port `0x64`, which
//! Linux does for `reboot=k`. Registered at `0x60` with 5 ports (data at
//! offset 0, command/status at offset 4); port `0x61` in between belongs to
//! KVM's in-kernel PIT speaker emulation and never reaches this device.

use crate::bus::BusDevice;
use crate::legacy::{GuestRequest, RequestSink};
use crate::snapshot::{DeviceState, Snapshottable, StateError};

/// The first port of the controller.
pub const I8042_BASE: u64 = 0x60;
/// The number of ports registered (0x60..=0x64).
pub const I8042_PORTS: u64 = 5;
/// Offset of the data port.
const DATA: u64 = 0;
/// Offset of the command/status port.
const COMMAND: u64 = 4;
/// The command that pulses the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;
/// The command that reads the controller configuration byte.
const CMD_READ_CONFIG: u8 = 0x20;
/// The command that writes the controller configuration byte.
const CMD_WRITE_CONFIG: u8 = 0x60;
/// Status bit: the output buffer holds a byte for the guest.
const STATUS_OUTPUT_FULL: u8 = 0x01;

/// The kind and version of the i8042 state in a snapshot.
const STATE_KIND: &str = "i8042";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of the controller: its configuration byte, a
/// byte waiting for the guest, and whether the next data write is a
/// configuration byte.
#[derive(serde::Serialize, serde::Deserialize)]
struct I8042State {
    config: u8,
    output: Option<u8>,
    expect_config: bool,
}

/// The reset-line part of an i8042.
pub struct I8042 {
    requests: RequestSink,
    config: u8,
    output: Option<u8>,
    expect_config: bool,
}

impl I8042 {
    /// A controller reporting a reset through `requests`.
    pub fn new(requests: RequestSink) -> Self {
        I8042 {
            requests,
            config: 0,
            output: None,
            expect_config: false,
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA => self.output.take().unwrap_or(0),
            COMMAND => {
                if self.output.is_some() {
                    STATUS_OUTPUT_FULL
                } else {
                    0
                }
            }
            _ => 0xff,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            COMMAND => match value {
                CMD_RESET_CPU => {
                    tracing::debug!("i8042: reset line pulsed");
                    (self.requests)(GuestRequest::Reset);
                }
                CMD_READ_CONFIG => self.output = Some(self.config),
                CMD_WRITE_CONFIG => self.expect_config = true,
                _ => {}
            },
            DATA if self.expect_config => {
                self.config = value;
                self.expect_config = false;
            }
            _ => {}
        }
    }
}

impl Snapshottable for I8042 {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let state = I8042State {
            config: self.config,
            output: self.output,
            expect_config: self.expect_config,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let state: I8042State = state.decode(STATE_KIND, STATE_VERSION)?;
        self.config = state.config;
        self.output = state.output;
        self.expect_config = state.expect_config;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn state_carries_a_half_written_config_and_a_pending_byte() {
        let mut dev = I8042::new(crate::legacy::ignore_requests());
        dev.write(COMMAND, &[CMD_WRITE_CONFIG]);
        dev.write(DATA, &[0x47]);
        dev.write(COMMAND, &[CMD_READ_CONFIG]);
        let pending = dev.save_state().unwrap();
        dev.read(DATA, &mut [0u8]);
        dev.write(COMMAND, &[CMD_WRITE_CONFIG]);
        let half_written = dev.save_state().unwrap();

        let mut fresh = I8042::new(crate::legacy::ignore_requests());
        fresh.restore_state(&pending).unwrap();
        let mut b = [0u8];
        fresh.read(DATA, &mut b);
        assert_eq!(b[0], 0x47, "the byte the guest had not read yet");

        let mut fresh = I8042::new(crate::legacy::ignore_requests());
        fresh.restore_state(&half_written).unwrap();
        fresh.write(DATA, &[0x21]);
        fresh.write(COMMAND, &[CMD_READ_CONFIG]);
        fresh.read(DATA, &mut b);
        assert_eq!(
            b[0], 0x21,
            "the data write after restore is the config byte"
        );
    }

    #[test]
    fn reset_command_reports_a_reset() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut dev = I8042::new(Arc::new(move |r| sink.lock().unwrap().push(r)));
        let mut status = [0xffu8];
        dev.read(COMMAND, &mut status);
        assert_eq!(
            status[0] & 0x02,
            0,
            "input buffer empty: the guest may write"
        );
        dev.write(DATA, &[0xfe]);
        assert!(
            seen.lock().unwrap().is_empty(),
            "0xfe on the data port is no reset"
        );
        dev.write(COMMAND, &[CMD_RESET_CPU]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Reset]);
    }

    #[test]
    fn config_byte_round_trips() {
        let mut dev = I8042::new(crate::legacy::ignore_requests());
        dev.write(COMMAND, &[CMD_WRITE_CONFIG]);
        dev.write(DATA, &[0x45]);
        dev.write(COMMAND, &[CMD_READ_CONFIG]);
        let mut b = [0u8];
        dev.read(COMMAND, &mut b);
        assert_eq!(b[0] & STATUS_OUTPUT_FULL, STATUS_OUTPUT_FULL);
        dev.read(DATA, &mut b);
        assert_eq!(b[0], 0x45);
    }
}
