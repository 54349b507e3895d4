//! The ACPI fixed-hardware power-management block, as one port I/O device.
//!
//! Layout relative to [`PM_BASE`] (the FADT points at each part):
//!
//! | offset | size | register |
//! |--------|------|----------|
//! | 0x00   | 2    | PM1a status (write 1 to clear) |
//! | 0x02   | 2    | PM1a enable |
//! | 0x04   | 2    | PM1a control (`SCI_EN`, `SLP_TYP`, `SLP_EN`) |
//! | 0x08   | 4    | GPE0 status (write 1 to clear) |
//! | 0x0c   | 4    | GPE0 enable |
//! | 0x10   | 1    | reset register (write [`RESET_VALUE`]) |
//!
//! The SCI is an edge on an [`IrqLine`] (the MADT declares IRQ 9 edge
//! triggered, active high). It is raised when an enabled event becomes
//! pending, when the guest newly enables an event that is pending, and when
//! the guest clears some status bits while other enabled ones are still pending
//! (so no event is lost between the guest's read and its clear).
//!
//! `SCI_EN` reads as set from reset: the FADT has no SMI command port, so
//! the OS finds the machine already in ACPI mode.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;
use crate::legacy::{GuestRequest, RequestSink};
use crate::snapshot::{DeviceState, Snapshottable, StateError};

/// The port of the block's first register.
pub const PM_BASE: u16 = 0x600;
/// Ports the block decodes.
pub const PM_LEN: u16 = 0x20;
/// Offset of PM1a event block (status, then enable).
pub const PM1A_EVT_OFFSET: u16 = 0x00;
/// Length of the PM1a event block.
pub const PM1_EVT_LEN: u8 = 4;
/// Offset of PM1a control.
pub const PM1A_CNT_OFFSET: u16 = 0x04;
/// Length of PM1a control.
pub const PM1_CNT_LEN: u8 = 2;
/// Offset of the GPE0 block (status half, then enable half).
pub const GPE0_OFFSET: u16 = 0x08;
/// Length of the GPE0 block (4 status bytes + 4 enable bytes: GPEs 0..32).
pub const GPE0_LEN: u8 = 8;
/// Offset of the reset register.
pub const RESET_OFFSET: u16 = 0x10;
/// The value the guest writes to the reset register to reset.
pub const RESET_VALUE: u8 = 0x06;
/// The SCI's legacy IRQ.
pub const SCI_IRQ: u8 = 9;
/// The `SLP_TYP` value of S5, as the DSDT's `_S5` package declares it.
pub const S5_SLP_TYP: u16 = 5;
/// Number of general-purpose events in GPE0.
pub const GPE_COUNT: u32 = (GPE0_LEN as u32 / 2) * 8;

/// PM1 status/enable bit of the power button.
pub const PWRBTN: u16 = 1 << 8;
/// PM1 status bit: the machine woke.
pub const WAK_STS: u16 = 1 << 15;
/// PM1 control: SCI enabled (ACPI mode).
pub const SCI_EN: u16 = 1 << 0;
/// PM1 control: sleep enable (the write that enters `SLP_TYP`).
pub const SLP_EN: u16 = 1 << 13;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7;

/// The kind and version of the PM block's state in a snapshot.
const STATE_KIND: &str = "acpi-pm";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of the PM block: its registers.
#[derive(serde::Serialize, serde::Deserialize)]
struct PmState {
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe_sts: u32,
    gpe_en: u32,
}

/// The PM register block.
pub struct PmDevice {
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe_sts: u32,
    gpe_en: u32,
    sci: Arc<dyn IrqLine>,
    requests: RequestSink,
}

/// Why a GPE could not be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GpeError {
    /// The GPE number is beyond the GPE0 block.
    #[error("GPE {0} is outside GPE0 (0..{GPE_COUNT})")]
    OutOfRange(u32),
}

fn set_byte16(reg: &mut u16, index: u64, value: u8) -> u16 {
    let mut bytes = reg.to_le_bytes();
    if let Some(b) = bytes.get_mut(index as usize) {
        *b = value;
    }
    u16::from_le_bytes(bytes)
}

impl PmDevice {
    /// A block raising `sci` and reporting S5 / reset through `requests`.
    pub fn new(sci: Arc<dyn IrqLine>, requests: RequestSink) -> Self {
        PmDevice {
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: SCI_EN,
            gpe_sts: 0,
            gpe_en: 0,
            sci,
            requests,
        }
    }

    fn pending(&self) -> bool {
        self.pm1_cnt & SCI_EN != 0
            && (self.pm1_sts & self.pm1_en & PWRBTN != 0 || self.gpe_sts & self.gpe_en != 0)
    }

    fn raise_sci_if_pending(&self) {
        if self.pending()
            && let Err(e) = self.sci.trigger()
        {
            crate::log_limited!(warn, "acpi pm: raising the SCI failed: {e}");
        }
    }

    /// Raises the fixed power-button event. Returns whether the guest has
    /// enabled it (a guest that has not will not see the SCI).
    pub fn press_power_button(&mut self) -> bool {
        self.pm1_sts |= PWRBTN;
        self.raise_sci_if_pending();
        self.pm1_en & PWRBTN != 0
    }

    /// Sets general-purpose event `gpe` (for PCI hotplug: the DSDT's
    /// `\_GPE._Exx` method runs). Returns whether the guest has enabled it.
    pub fn raise_gpe(&mut self, gpe: u32) -> Result<bool, GpeError> {
        if gpe >= GPE_COUNT {
            return Err(GpeError::OutOfRange(gpe));
        }
        self.gpe_sts |= 1 << gpe;
        self.raise_sci_if_pending();
        Ok(self.gpe_en & (1 << gpe) != 0)
    }

    /// Whether the guest has enabled general-purpose event `gpe` (its ACPI
    /// subsystem is up and has a handler for it).
    pub fn gpe_enabled(&self, gpe: u32) -> bool {
        gpe < GPE_COUNT && self.gpe_en & (1 << gpe) != 0
    }

    /// The PM1 status register, for tests and diagnostics.
    pub fn pm1_status(&self) -> u16 {
        self.pm1_sts
    }

    /// The PM1 enable register.
    pub fn pm1_enable(&self) -> u16 {
        self.pm1_en
    }

    fn read_byte(&self, offset: u64) -> u8 {
        let pm1_sts = self.pm1_sts.to_le_bytes();
        let pm1_en = self.pm1_en.to_le_bytes();
        let pm1_cnt = self.pm1_cnt.to_le_bytes();
        let gpe_sts = self.gpe_sts.to_le_bytes();
        let gpe_en = self.gpe_en.to_le_bytes();
        let o = offset as usize;
        match offset {
            0x0..=0x1 => pm1_sts[o],
            0x2..=0x3 => pm1_en[o - 2],
            0x4..=0x5 => pm1_cnt[o - 4],
            0x8..=0xb => gpe_sts[o - 8],
            0xc..=0xf => gpe_en[o - 0xc],
            0x10 => 0,
            _ => 0xff,
        }
    }

    fn write_byte(&mut self, offset: u64, value: u8) {
        match offset {
            0x0..=0x1 => {
                let clear = u16::from(value) << (8 * offset);
                if self.pm1_sts & clear != 0 {
                    self.pm1_sts &= !clear;
                    self.raise_sci_if_pending();
                }
            }
            0x2..=0x3 => {
                let before = self.pm1_en;
                self.pm1_en = set_byte16(&mut self.pm1_en, offset - 2, value);
                if self.pm1_en != before {
                    self.raise_sci_if_pending();
                }
            }
            0x4 => self.pm1_cnt = set_byte16(&mut self.pm1_cnt, 0, value) | SCI_EN,
            0x5 => {
                let cnt = set_byte16(&mut self.pm1_cnt, 1, value);
                self.control_written(cnt);
            }
            0x8..=0xb => {
                let clear = u32::from(value) << (8 * (offset - 8));
                if self.gpe_sts & clear != 0 {
                    self.gpe_sts &= !clear;
                    self.raise_sci_if_pending();
                }
            }
            0xc..=0xf => {
                let shift = 8 * (offset - 0xc);
                let before = self.gpe_en;
                self.gpe_en = (self.gpe_en & !(0xff << shift)) | (u32::from(value) << shift);
                if self.gpe_en != before {
                    self.raise_sci_if_pending();
                }
            }
            0x10 if value == RESET_VALUE => {
                tracing::debug!("acpi pm: reset register written");
                (self.requests)(GuestRequest::Reset);
            }
            _ => {}
        }
    }

    fn control_written(&mut self, cnt: u16) {
        // SLP_EN is write-only: it triggers the transition and reads as 0.
        self.pm1_cnt = (cnt & !SLP_EN) | SCI_EN;
        if cnt & SLP_EN != 0 {
            let slp_typ = (cnt >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
            if slp_typ == S5_SLP_TYP {
                tracing::debug!("acpi pm: S5 requested");
                (self.requests)(GuestRequest::PowerOff);
            } else {
                crate::log_limited!(
                    warn,
                    "acpi pm: sleep type {slp_typ} is not supported; ignored"
                );
            }
        }
    }
}

impl BusDevice for PmDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_byte(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.write_byte(offset + i as u64, *b);
        }
    }
}

impl Snapshottable for PmDevice {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let state = PmState {
            pm1_sts: self.pm1_sts,
            pm1_en: self.pm1_en,
            pm1_cnt: self.pm1_cnt,
            gpe_sts: self.gpe_sts,
            gpe_en: self.gpe_en,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    /// Puts the registers back without raising the SCI: an event pending
    /// at save time is pending in the restored interrupt controller too.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let state: PmState = state.decode(STATE_KIND, STATE_VERSION)?;
        let gpe_mask = u32::MAX.checked_shr(32 - GPE_COUNT).unwrap_or(0);
        if (state.gpe_sts | state.gpe_en) & !gpe_mask != 0 {
            return Err(StateError::Invalid(format!(
                "GPE bits past GPE0's {GPE_COUNT} events"
            )));
        }
        self.pm1_sts = state.pm1_sts;
        self.pm1_en = state.pm1_en;
        // SCI_EN reads as set, SLP_EN as clear, whatever the file says.
        self.pm1_cnt = (state.pm1_cnt & !SLP_EN) | SCI_EN;
        self.gpe_sts = state.gpe_sts;
        self.gpe_en = state.gpe_en;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::interrupt::CountingIrq;

    #[test]
    fn state_carries_enables_and_pending_events_without_a_new_sci() {
        let (mut pm, _, _) = device();
        pm.write(0x2, &PWRBTN.to_le_bytes());
        pm.write(0xc, &[0x0a, 0, 0, 0]);
        pm.raise_gpe(1).unwrap();
        let state = pm.save_state().unwrap();
        let (mut fresh, irq, requests) = device();
        fresh.restore_state(&state).unwrap();
        assert_eq!(irq.count(), 0, "restore raises no SCI of its own");
        assert_eq!(fresh.pm1_enable(), PWRBTN);
        assert!(fresh.gpe_enabled(1) && fresh.gpe_enabled(3));
        let mut sts = [0u8; 4];
        fresh.read(0x8, &mut sts);
        assert_eq!(sts, [0x02, 0, 0, 0], "GPE 1 still pending");
        assert!(requests.lock().unwrap().is_empty());
    }

    fn device() -> (PmDevice, Arc<CountingIrq>, Arc<Mutex<Vec<GuestRequest>>>) {
        let irq = Arc::new(CountingIrq::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let dev = PmDevice::new(irq.clone(), Arc::new(move |r| sink.lock().unwrap().push(r)));
        (dev, irq, seen)
    }

    fn read16(dev: &mut PmDevice, offset: u16) -> u16 {
        let mut b = [0u8; 2];
        dev.read(u64::from(offset), &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn sci_en_is_set_from_reset() {
        let (mut dev, _, _) = device();
        assert_eq!(read16(&mut dev, PM1A_CNT_OFFSET) & SCI_EN, SCI_EN);
        dev.write(u64::from(PM1A_CNT_OFFSET), &0u16.to_le_bytes());
        assert_eq!(read16(&mut dev, PM1A_CNT_OFFSET) & SCI_EN, SCI_EN);
    }

    #[test]
    fn power_button_raises_the_sci_only_when_enabled() {
        let (mut dev, irq, _) = device();
        assert!(!dev.press_power_button());
        assert_eq!(irq.count(), 0);
        assert_eq!(read16(&mut dev, PM1A_EVT_OFFSET) & PWRBTN, PWRBTN);
        // Enabling a pending event raises the SCI.
        dev.write(2, &PWRBTN.to_le_bytes());
        assert_eq!(irq.count(), 1);
        // Write 1 to clear.
        dev.write(0, &PWRBTN.to_le_bytes());
        assert_eq!(read16(&mut dev, PM1A_EVT_OFFSET) & PWRBTN, 0);
        assert!(dev.press_power_button());
        assert_eq!(irq.count(), 2);
        // Writing 0 clears nothing.
        dev.write(0, &0u16.to_le_bytes());
        assert_eq!(dev.pm1_status() & PWRBTN, PWRBTN);
    }

    #[test]
    fn s5_with_slp_en_requests_power_off() {
        let (mut dev, _, seen) = device();
        // SLP_TYP alone does nothing.
        dev.write(4, &(S5_SLP_TYP << 10).to_le_bytes());
        assert!(seen.lock().unwrap().is_empty());
        dev.write(4, &((S5_SLP_TYP << 10) | SLP_EN).to_le_bytes());
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::PowerOff]);
        assert_eq!(read16(&mut dev, 4) & SLP_EN, 0, "SLP_EN reads as 0");
        // Another sleep type is ignored.
        dev.write(4, &((1 << 10) | SLP_EN).to_le_bytes());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn reset_register_requests_reset() {
        let (mut dev, _, seen) = device();
        dev.write(u64::from(RESET_OFFSET), &[0x01]);
        assert!(seen.lock().unwrap().is_empty());
        dev.write(u64::from(RESET_OFFSET), &[RESET_VALUE]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Reset]);
    }

    #[test]
    fn gpes_latch_and_raise_the_sci_when_enabled() {
        let (mut dev, irq, _) = device();
        assert_eq!(
            dev.raise_gpe(GPE_COUNT),
            Err(GpeError::OutOfRange(GPE_COUNT))
        );
        assert_eq!(dev.raise_gpe(1), Ok(false));
        assert_eq!(irq.count(), 0);
        dev.write(u64::from(GPE0_OFFSET) + 4, &[0x02]);
        assert_eq!(irq.count(), 1);
        assert_eq!(dev.raise_gpe(9), Ok(false));
        let mut sts = [0u8; 4];
        dev.read(u64::from(GPE0_OFFSET), &mut sts);
        assert_eq!(u32::from_le_bytes(sts), (1 << 1) | (1 << 9));
        // Clearing GPE 1 while an enabled GPE is still pending re-raises.
        dev.write(u64::from(GPE0_OFFSET) + 5, &[0x02]);
        dev.raise_gpe(9).unwrap();
        let before = irq.count();
        dev.write(u64::from(GPE0_OFFSET), &[0x02]);
        assert_eq!(irq.count(), before + 1);
        dev.write(u64::from(GPE0_OFFSET), &[0x00, 0x02]);
        let before = irq.count();
        dev.write(u64::from(GPE0_OFFSET), &[0x00, 0x00]);
        assert_eq!(irq.count(), before, "nothing pending: no SCI");
    }
}
