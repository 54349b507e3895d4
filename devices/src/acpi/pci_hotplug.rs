//! ACPI PCI hotplug for the root bus: a small port I/O register block the
//! DSDT's methods read and write, and the AML that goes with it
//! ([`hotplug_aml`]). The guest's `acpiphp` driver (Linux
//! `CONFIG_HOTPLUG_PCI_ACPI`) reacts to the `Notify`s that AML sends.
//!
//! # Registers
//!
//! Relative to [`PCIHP_BASE`], [`PCIHP_LEN`] ports. Each register is a
//! bitmap with bit *n* for PCI slot *n* of bus 0; bit 0 (the host bridge) is
//! never set and never acted on.
//!
//! | offset | size | name  | access |
//! |--------|------|-------|--------|
//! | 0x0    | 4    | UP    | read: slots announced since the last read; the read clears them |
//! | 0x4    | 4    | DOWN  | read: slots with a removal requested and not yet ejected |
//! | 0x8    | 4    | EJECT | write: bitmap of slots the guest has ejected; reads as 0 |
//!
//! - **UP** collects [`PciHotplug::announce_add`]s. Reading a byte of it
//!   returns those eight bits and clears them, so one GPE run handles every
//!   add that happened before it and each add is reported once. A narrower
//!   read clears only the bytes it returned, so no add is lost.
//! - **DOWN** collects [`PciHotplug::request_removal`]s. Reading does not
//!   clear it: a slot stays requested until the guest ejects it, and every
//!   GPE run repeats the eject request for it.
//! - **EJECT**: for each valid slot set in the written value, the DOWN bit is
//!   cleared and the [`EjectSink`] is called with the slot number. An eject
//!   of a slot without a pending removal (the guest user ejected it through
//!   `/sys/bus/pci/slots/N/power`, or the guest repeated an eject) is still
//!   passed on: the sink decides what to do with it. A partial write (say one
//!   byte at offset 9) ejects the slots of the bytes written (slots 8-15).
//! - Writes to UP and DOWN are ignored; ports past the registers read as 0
//!   and ignore writes. Accesses of any size and alignment are handled byte
//!   by byte.
//!
//! # The AML
//!
//! Inside `\_SB.PCI0`: an operation region over the block with the fields
//! `PCIU` (UP), `PCID` (DOWN) and `B0EJ` (EJECT); one `Device (Sxx)` per
//! hotpluggable slot (`xx` the slot number in hex) with `_ADR` (slot,
//! function 0), `_SUN` (the slot number) and `_EJ0` (writes the slot's bit
//! to `B0EJ`); and the method `PCNT`, which reads `PCIU` and `PCID` once and
//! sends `Notify (Sxx, 1)` (device check) for each slot set in UP and
//! `Notify (Sxx, 3)` (eject request) for each slot set in DOWN. At the top
//! level, `\_GPE._E01` ([`PCIHP_GPE`]) calls `\_SB.PCI0.PCNT`.
//!
//! # Flow
//!
//! Add: the VMM puts the function on the bus (it must answer configuration
//! reads before the guest looks), calls [`PciHotplug::announce_add`], then
//! raises [`PCIHP_GPE`] on the PM block
//! ([`crate::acpi::pm::PmDevice::raise_gpe`]). The guest runs `_E01`, sees
//! the slot in UP and rescans it.
//!
//! Remove: the VMM calls [`PciHotplug::request_removal`] and raises the GPE.
//! The guest sees the slot in DOWN, unbinds the driver, removes the
//! function and runs `_EJ0`, whose write to EJECT calls the [`EjectSink`].
//! The VMM then takes the function off the bus: the guest decides slot
//! presence by reading the vendor id, so a function left in place would be
//! found again by the next rescan.

use std::fmt;
use std::sync::Arc;

use acpi_tables::Aml;
use acpi_tables::aml::{
    And, Device, Field, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If, Local,
    Method, MethodCall, Name, Notify, OpRegion, OpRegionSpace, Path, Scope, Store, ZERO,
};

use crate::bus::BusDevice;
use crate::snapshot::{DeviceState, Snapshottable, StateError};

/// First I/O port of the register block.
pub const PCIHP_BASE: u16 = 0xae00;
/// Length of the register block in ports.
pub const PCIHP_LEN: u16 = 0x0c;
/// The GPE the block raises (the DSDT has `\_GPE._E01`).
pub const PCIHP_GPE: u32 = 1;

/// Offset of UP (slots added since the last read, cleared by reading).
pub const UP_OFFSET: u16 = 0x0;
/// Offset of DOWN (slots with a removal pending).
pub const DOWN_OFFSET: u16 = 0x4;
/// Offset of EJECT (the guest writes the slots it ejected).
pub const EJECT_OFFSET: u16 = 0x8;

/// Bits of the slots that can be hotplugged: 1..=31 (slot 0 is the host bridge).
const SLOT_MASK: u32 = !1;

/// Notify value of a device check (re-enumerate the slot).
const NOTIFY_DEVICE_CHECK: u8 = 1;
/// Notify value of an eject request.
const NOTIFY_EJECT_REQUEST: u8 = 3;

// Names the AML uses (4 characters each).
const REGION: &str = "PCST";
const FIELD_UP: &str = "PCIU";
const FIELD_DOWN: &str = "PCID";
const FIELD_EJECT: &str = "B0EJ";
const SCAN_METHOD: &str = "PCNT";
const SCAN_METHOD_PATH: &str = "\\_SB_.PCI0.PCNT";

/// Receives the slot number the guest ejected (wrote to EJECT).
pub type EjectSink = Arc<dyn Fn(u8) + Send + Sync>;

/// Why a hotplug request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HotplugError {
    /// The slot is 0 (the host bridge) or not below 32.
    #[error("slot {0} cannot be hotplugged (valid slots: 1..=31)")]
    InvalidSlot(u8),
}

/// The slot's bit, if the slot can be hotplugged.
fn slot_bit(slot: u8) -> Result<u32, HotplugError> {
    1u32.checked_shl(u32::from(slot))
        .filter(|bit| bit & SLOT_MASK != 0)
        .ok_or(HotplugError::InvalidSlot(slot))
}

/// The kind and version of the hotplug block's state in a snapshot.
const STATE_KIND: &str = "acpi-pci-hotplug";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of the block: the slots announced and not yet
/// read by the guest, and the removals requested and not yet ejected.
#[derive(serde::Serialize, serde::Deserialize)]
struct HotplugState {
    up: u32,
    down: u32,
}

/// The ACPI PCI hotplug register block (see the module docs).
///
/// The [`EjectSink`] is called from [`BusDevice::write`], on the vCPU thread
/// and while the caller (the port bus) holds this device's lock: the sink
/// must not lock this device again (it would deadlock). Taking the function
/// off the PCI root there is fine as long as nothing on that path holds the
/// root's lock; otherwise hand the work off (a channel, a queue).
pub struct PciHotplug {
    up: u32,
    down: u32,
    eject: EjectSink,
}

impl fmt::Debug for PciHotplug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciHotplug")
            .field("up", &format_args!("{:#010x}", self.up))
            .field("down", &format_args!("{:#010x}", self.down))
            .finish_non_exhaustive()
    }
}

impl PciHotplug {
    /// A block with nothing announced, reporting ejects to `eject`.
    pub fn new(eject: EjectSink) -> Self {
        PciHotplug {
            up: 0,
            down: 0,
            eject,
        }
    }

    /// Marks `slot` as newly present (guest reads it from UP); error for slot 0 or >= 32.
    ///
    /// Raise [`PCIHP_GPE`] afterwards so the guest looks.
    pub fn announce_add(&mut self, slot: u8) -> Result<(), HotplugError> {
        self.up |= slot_bit(slot)?;
        tracing::debug!("pci hotplug: slot {slot} announced");
        Ok(())
    }

    /// Asks the guest to eject `slot` (DOWN bit); error for slot 0 or >= 32.
    ///
    /// Raise [`PCIHP_GPE`] afterwards so the guest looks.
    pub fn request_removal(&mut self, slot: u8) -> Result<(), HotplugError> {
        self.down |= slot_bit(slot)?;
        tracing::debug!("pci hotplug: removal of slot {slot} requested");
        Ok(())
    }

    /// Slots with a removal requested and not yet ejected (bitmap).
    pub fn removals_pending(&self) -> u32 {
        self.down
    }

    /// Reads one byte of the block; a byte of UP is cleared by the read.
    fn read_byte(&mut self, offset: u64) -> u8 {
        match offset {
            0..=3 => {
                let shift = 8 * offset;
                let value = (self.up >> shift) as u8;
                self.up &= !(0xff << shift);
                value
            }
            4..=7 => (self.down >> (8 * (offset - 4))) as u8,
            _ => 0,
        }
    }

    /// Handles the guest's eject of the slots in `slots`.
    fn ejected(&mut self, slots: u32) {
        if slots & !SLOT_MASK != 0 {
            crate::log_limited!(
                warn,
                "pci hotplug: the guest ejected slot 0 (the host bridge); ignored"
            );
        }
        for slot in 1..u32::BITS as u8 {
            let bit = 1u32 << slot;
            if slots & bit == 0 {
                continue;
            }
            if self.down & bit != 0 {
                tracing::debug!("pci hotplug: the guest ejected slot {slot}");
            } else {
                crate::log_limited!(
                    info,
                    "pci hotplug: the guest ejected slot {slot} without a removal request"
                );
            }
            self.down &= !bit;
            (self.eject)(slot);
        }
    }
}

impl BusDevice for PciHotplug {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .map_or(0, |o| self.read_byte(o));
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let eject_range = u64::from(EJECT_OFFSET)..u64::from(EJECT_OFFSET) + 4;
        let mut eject = 0u32;
        let mut ignored = false;
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(o) if eject_range.contains(&o) => {
                    eject |= u32::from(b) << (8 * (o - eject_range.start));
                }
                _ => ignored |= b != 0,
            }
        }
        if ignored {
            tracing::debug!(
                "pci hotplug: write of {data:02x?} at offset {offset:#x} outside EJECT ignored"
            );
        }
        if eject != 0 {
            self.ejected(eject);
        }
    }
}

/// The AML object name of `slot`'s device: `S` and two hex digits, padded
/// to four characters (`S01_`; ASL shows it as `S01`).
fn slot_name(slot: u8) -> String {
    format!("S{slot:02X}_")
}

/// `Device (Sxx) { _ADR, _SUN, _EJ0 }` for one slot.
fn slot_device(slot: u8, bit: u32, out: &mut Vec<u8>) {
    let adr = Name::new("_ADR".into(), &(u32::from(slot) << 16));
    let sun = Name::new("_SUN".into(), &u32::from(slot));
    let eject_field = Path::new(FIELD_EJECT);
    let store = Store::new(&eject_field, &bit);
    // Serialized: two ejects of the same slot must not interleave.
    let ej0 = Method::new("_EJ0".into(), 1, true, vec![&store]);
    Device::new(Path::new(&slot_name(slot)), vec![&adr, &sun, &ej0]).to_aml_bytes(out);
}

/// `Method (PCNT, 0, Serialized)`: reads UP and DOWN once and notifies the slots.
fn scan_method(slots: &[(u8, u32)], out: &mut Vec<u8>) {
    let up = Local(0);
    let down = Local(1);
    let up_field = Path::new(FIELD_UP);
    let down_field = Path::new(FIELD_DOWN);
    let read_up = Store::new(&up, &up_field);
    let read_down = Store::new(&down, &down_field);

    let paths: Vec<Path> = slots
        .iter()
        .map(|&(slot, _)| Path::new(&slot_name(slot)))
        .collect();
    let added: Vec<And> = slots
        .iter()
        .map(|(_, bit)| And::new(&ZERO, &up, bit))
        .collect();
    let removing: Vec<And> = slots
        .iter()
        .map(|(_, bit)| And::new(&ZERO, &down, bit))
        .collect();
    let checks: Vec<Notify> = paths
        .iter()
        .map(|p| Notify::new(p, &NOTIFY_DEVICE_CHECK))
        .collect();
    let ejects: Vec<Notify> = paths
        .iter()
        .map(|p| Notify::new(p, &NOTIFY_EJECT_REQUEST))
        .collect();
    let mut tests: Vec<If> = Vec::with_capacity(2 * slots.len());
    for i in 0..slots.len() {
        tests.push(If::new(&added[i], vec![&checks[i]]));
        tests.push(If::new(&removing[i], vec![&ejects[i]]));
    }

    let mut body: Vec<&dyn Aml> = vec![&read_up, &read_down];
    body.extend(tests.iter().map(|t| t as &dyn Aml));
    // Serialized: a GPE run must not interleave with another run's reads.
    Method::new(SCAN_METHOD.into(), 0, true, body).to_aml_bytes(out);
}

/// The AML for hotpluggable `slots` (each 1..=31): returns (root_bridge_aml, top_level_aml)
/// to put in `AcpiConfig::root_bridge_aml` / `top_level_aml`.
///
/// Slots outside 1..=31 are left out (with a warning); a slot given twice
/// gets one device. With no slots the region, `PCNT` and `_E01` are still
/// there (a GPE then does nothing).
pub fn hotplug_aml(slots: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut valid: Vec<(u8, u32)> = Vec::with_capacity(slots.len());
    for &slot in slots {
        match slot_bit(slot) {
            Ok(bit) => valid.push((slot, bit)),
            Err(e) => tracing::warn!("pci hotplug AML: {e}; slot left out"),
        }
    }
    valid.sort_unstable();
    valid.dedup();

    let mut root = Vec::new();
    OpRegion::new(
        REGION.into(),
        OpRegionSpace::SystemIO,
        &PCIHP_BASE,
        &PCIHP_LEN,
    )
    .to_aml_bytes(&mut root);
    Field::new(
        REGION.into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![
            FieldEntry::Named(field_name(FIELD_UP), 32),
            FieldEntry::Named(field_name(FIELD_DOWN), 32),
            FieldEntry::Named(field_name(FIELD_EJECT), 32),
        ],
    )
    .to_aml_bytes(&mut root);
    for &(slot, bit) in &valid {
        slot_device(slot, bit, &mut root);
    }
    scan_method(&valid, &mut root);

    let mut top = Vec::new();
    let scan = MethodCall::new(SCAN_METHOD_PATH.into(), vec![]);
    let gpe_method = Method::new(
        Path::new(&format!("_E{PCIHP_GPE:02X}")),
        0,
        false,
        vec![&scan],
    );
    Scope::new("\\_GPE".into(), vec![&gpe_method]).to_aml_bytes(&mut top);
    (root, top)
}

/// A four-character name as a field entry name.
fn field_name(name: &str) -> [u8; 4] {
    let mut out = [b'_'; 4];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b;
    }
    out
}

impl Snapshottable for PciHotplug {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let state = HotplugState {
            up: self.up,
            down: self.down,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let state: HotplugState = state.decode(STATE_KIND, STATE_VERSION)?;
        if (state.up | state.down) & !SLOT_MASK != 0 {
            return Err(StateError::Invalid(
                "slot 0 (the host bridge) marked for hotplug".to_owned(),
            ));
        }
        self.up = state.up;
        self.down = state.down;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn state_carries_unread_adds_and_pending_removals() {
        let (mut dev, _) = device();
        dev.announce_add(4).unwrap();
        dev.request_removal(7).unwrap();
        let state = dev.save_state().unwrap();
        let (mut fresh, _) = device();
        fresh.restore_state(&state).unwrap();
        let mut up = [0u8; 4];
        fresh.read(0, &mut up);
        assert_eq!(u32::from_le_bytes(up), 1 << 4);
        assert_eq!(fresh.removals_pending(), 1 << 7);
        let bad =
            DeviceState::new(STATE_KIND, STATE_VERSION, &HotplugState { up: 1, down: 0 }).unwrap();
        assert!(matches!(
            fresh.restore_state(&bad),
            Err(StateError::Invalid(_))
        ));
        assert_eq!(
            fresh.removals_pending(),
            1 << 7,
            "a refused state changes nothing"
        );
    }

    fn device() -> (PciHotplug, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let dev = PciHotplug::new(Arc::new(move |slot| sink.lock().unwrap().push(slot)));
        (dev, seen)
    }

    #[test]
    fn slot_bits() {
        assert_eq!(slot_bit(0), Err(HotplugError::InvalidSlot(0)));
        assert_eq!(slot_bit(1), Ok(2));
        assert_eq!(slot_bit(31), Ok(1 << 31));
        assert_eq!(slot_bit(32), Err(HotplugError::InvalidSlot(32)));
        assert_eq!(slot_bit(255), Err(HotplugError::InvalidSlot(255)));
    }

    #[test]
    fn reads_past_the_block_are_zero_and_writes_ignored() {
        let (mut dev, seen) = device();
        dev.announce_add(3).unwrap();
        dev.request_removal(3).unwrap();
        dev.write(0, &[0xff; 8]);
        dev.write(12, &[0xff; 4]);
        dev.write(u64::MAX, &[0xff; 4]);
        assert!(seen.lock().unwrap().is_empty());
        let mut b = [0xaa; 4];
        dev.read(12, &mut b);
        assert_eq!(b, [0; 4]);
        dev.read(u64::MAX - 1, &mut b);
        assert_eq!(b, [0; 4]);
        assert_eq!(dev.up, 1 << 3, "writes to UP are ignored");
        assert_eq!(dev.removals_pending(), 1 << 3);
    }

    #[test]
    fn field_names_are_padded() {
        assert_eq!(&field_name("B0EJ"), b"B0EJ");
        assert_eq!(&field_name("AB"), b"AB__");
        assert_eq!(slot_name(0x1f), "S1F_");
    }
}
