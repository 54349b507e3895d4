//! A CMOS/RTC stub at ports `0x70`/`0x71`: an index register and 128 bytes
//! of CMOS, with the clock registers reading the host's UTC time (BCD,
//! 24-hour) and the update-in-progress bit always clear, so that Linux's
//! `rtc_cmos` reads a sane wall-clock time instead of spinning on `0xff`.
//! Alarms, periodic interrupts and NVRAM persistence are not emulated.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;
use crate::snapshot::{DeviceState, Snapshottable, StateError};

/// The index port; the data port follows it.
pub const CMOS_BASE: u64 = 0x70;
/// Ports decoded (index and data).
pub const CMOS_PORTS: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// The kind and version of the CMOS state in a snapshot.
const STATE_KIND: &str = "cmos";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of the CMOS: the index register and the 128 bytes
/// behind it (the clock registers are read from the host's clock, so the
/// guest's wall-clock time moves on across a restore as on real hardware).
#[derive(serde::Serialize, serde::Deserialize)]
struct CmosState {
    index: u8,
    nvram: Vec<u8>,
}

/// The CMOS stub.
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

fn bcd(v: u64) -> u8 {
    // Every caller passes a value below 100.
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Cmos {
    /// A CMOS with zeroed NVRAM.
    pub fn new() -> Self {
        let mut nvram = [0u8; 128];
        nvram[usize::from(REG_A)] = 0x26; // 32.768 kHz base, 1.024 kHz rate, UIP clear
        nvram[usize::from(REG_B)] = 0x02; // 24-hour, BCD, no interrupts
        nvram[usize::from(REG_D)] = 0x80; // valid RAM and time
        Cmos { index: 0, nvram }
    }

    fn register(&self, index: u8) -> u8 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = (now / 86_400) as i64;
        let secs = now % 86_400;
        let (year, month, day) = civil_from_days(days);
        match index {
            REG_SECONDS => bcd(secs % 60),
            REG_MINUTES => bcd((secs / 60) % 60),
            REG_HOURS => bcd(secs / 3600),
            REG_WEEKDAY => bcd(((days + 4).rem_euclid(7) + 1) as u64),
            REG_DAY => bcd(day),
            REG_MONTH => bcd(month),
            REG_YEAR => bcd(year.rem_euclid(100) as u64),
            REG_CENTURY => bcd((year / 100).rem_euclid(100) as u64),
            REG_C => 0,
            i => self.nvram[usize::from(i & 0x7f)],
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0 => self.index,
            1 => self.register(self.index),
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            // Bit 7 of the index port is the NMI mask; it is not an index bit.
            0 => self.index = value & 0x7f,
            1 => match self.index {
                REG_A | REG_C | REG_D => {}
                i => self.nvram[usize::from(i)] = value,
            },
            _ => {}
        }
    }
}

impl Snapshottable for Cmos {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let state = CmosState {
            index: self.index,
            nvram: self.nvram.to_vec(),
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let state: CmosState = state.decode(STATE_KIND, STATE_VERSION)?;
        let nvram = <[u8; 128]>::try_from(state.nvram.as_slice()).map_err(|_| {
            StateError::Invalid(format!("CMOS of {} bytes, 128 expected", state.nvram.len()))
        })?;
        if state.index > 0x7f {
            return Err(StateError::Invalid(format!(
                "CMOS index {:#x} past 0x7f",
                state.index
            )));
        }
        self.index = state.index;
        self.nvram = nvram;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_carries_the_index_and_nvram_to_a_fresh_cmos() {
        let mut cmos = Cmos::new();
        cmos.write(0, &[0x40]);
        cmos.write(1, &[0x5a]);
        cmos.write(0, &[0x41]);
        let state = cmos.save_state().unwrap();
        let mut fresh = Cmos::new();
        fresh.restore_state(&state).unwrap();
        let mut index = [0u8];
        fresh.read(0, &mut index);
        assert_eq!(index[0], 0x41, "index register");
        assert_eq!(read(&mut fresh, 0x40), 0x5a, "NVRAM byte");
    }

    #[test]
    fn a_bad_cmos_state_is_refused_and_changes_nothing() {
        let mut cmos = Cmos::new();
        cmos.write(0, &[0x40]);
        cmos.write(1, &[0x11]);
        let short = DeviceState::new(
            STATE_KIND,
            STATE_VERSION,
            &CmosState {
                index: 0,
                nvram: vec![0; 64],
            },
        )
        .unwrap();
        assert!(matches!(
            cmos.restore_state(&short),
            Err(StateError::Invalid(_))
        ));
        let foreign = DeviceState::new("i8042", 1, &()).unwrap();
        assert!(matches!(
            cmos.restore_state(&foreign),
            Err(StateError::Mismatch { .. })
        ));
        assert_eq!(read(&mut cmos, 0x40), 0x11);
    }

    fn read(cmos: &mut Cmos, index: u8) -> u8 {
        cmos.write(0, &[index]);
        let mut b = [0u8];
        cmos.read(1, &mut b);
        b[0]
    }

    #[test]
    fn clock_registers_are_bcd_and_uip_is_clear() {
        let mut cmos = Cmos::new();
        assert_eq!(read(&mut cmos, REG_A) & 0x80, 0);
        let month = read(&mut cmos, REG_MONTH);
        assert!((0x01..=0x12).contains(&month), "{month:#x}");
        assert_eq!(read(&mut cmos, REG_CENTURY), 0x20);
        assert!(read(&mut cmos, REG_SECONDS) < 0x60);
        cmos.write(0, &[0x40]);
        cmos.write(1, &[0x5a]);
        assert_eq!(read(&mut cmos, 0x40), 0x5a);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
