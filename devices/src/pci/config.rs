//! The configuration space of one function: a type 0 header, memory BARs
//! with the sizing protocol, and a capability list.
//!
//! Every byte has a write mask: bits outside it are read-only. A BAR's mask
//! covers only its address bits above the BAR size, which is all the sizing
//! protocol needs (write all ones, read back the size mask with the type
//! bits kept).

use super::bar::{BarInfo, BarKind, BarRegion};

/// Size of the conventional configuration space; the extended space above it
/// (up to 4 KiB through ECAM) reads as zero and ignores writes.
pub const CONFIG_SPACE_SIZE: usize = 256;

/// Command register bit: the function decodes memory accesses.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register bit: the function may master the bus (DMA, MSI).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register bit: legacy INTx is disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const STATUS_CAP_LIST: u8 = 1 << 4;
const BAR0: usize = 0x10;
const CAP_POINTER: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
const FIRST_CAP: usize = 0x40;
const BAR_COUNT: usize = 6;

/// Identity of a function, the read-only part of its type 0 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciHeader {
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Revision id.
    pub revision: u8,
    /// Class code.
    pub class: u8,
    /// Subclass code.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem id.
    pub subsystem_id: u16,
}

/// Why a configuration-space change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigSpaceError {
    /// The BAR index is out of range or already in use (a 64-bit BAR takes two).
    #[error("BAR {0} is out of range or already in use")]
    BarUnavailable(usize),
    /// The BAR size is not a power of two of at least 16 bytes (or too large for a 32-bit BAR).
    #[error("invalid BAR size {0:#x}")]
    BarSize(u64),
    /// The capability does not fit in the remaining configuration space.
    #[error("no room for a capability of {0} bytes")]
    CapabilityTooLarge(usize),
    /// Saved registers do not fit this function: another size, or a
    /// read-only byte (identity, BAR type, capability) that differs.
    #[error("saved configuration space does not match this function (byte {offset:#x})")]
    Mismatch {
        /// The first byte that does not match (the length if the sizes differ).
        offset: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bar {
    size: u64,
    kind: BarKind,
    prefetchable: bool,
}

/// A function's configuration space.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    write_mask: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<Bar>; BAR_COUNT],
    /// Registers taken by the high half of a 64-bit BAR.
    bar_high: [bool; BAR_COUNT],
    last_cap: Option<usize>,
    next_cap: usize,
}

impl ConfigSpace {
    /// A type 0 header with this identity, the memory, bus-master and INTx
    /// disable command bits and the interrupt line writable, no BARs and no
    /// capabilities.
    pub fn new(header: &PciHeader) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SPACE_SIZE],
            write_mask: [0; CONFIG_SPACE_SIZE],
            bars: [None; BAR_COUNT],
            bar_high: [false; BAR_COUNT],
            last_cap: None,
            next_cap: FIRST_CAP,
        };
        c.set_u16(0x00, header.vendor_id);
        c.set_u16(0x02, header.device_id);
        c.bytes[0x08] = header.revision;
        c.bytes[0x09] = header.prog_if;
        c.bytes[0x0a] = header.subclass;
        c.bytes[0x0b] = header.class;
        c.bytes[0x0e] = 0; // header type 0, single function
        c.set_u16(0x2c, header.subsystem_vendor_id);
        c.set_u16(0x2e, header.subsystem_id);
        let command_mask = COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
        c.write_mask[COMMAND..COMMAND + 2].copy_from_slice(&command_mask.to_le_bytes());
        c.write_mask[INTERRUPT_LINE] = 0xff;
        c
    }

    fn set_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    /// Sets the legacy interrupt pin (1 = INTA#, 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.bytes[INTERRUPT_PIN] = pin;
    }

    /// The interrupt line the guest wrote (its IRQ routing choice).
    pub fn interrupt_line(&self) -> u8 {
        self.bytes[INTERRUPT_LINE]
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[COMMAND], self.bytes[COMMAND + 1]])
    }

    /// Declares memory BAR `index` of `size` bytes (a power of two, at least 16).
    pub fn add_bar(
        &mut self,
        index: usize,
        size: u64,
        kind: BarKind,
        prefetchable: bool,
    ) -> Result<(), ConfigSpaceError> {
        let regs = if kind == BarKind::Memory64 { 2 } else { 1 };
        let free = |i: usize| i < BAR_COUNT && self.bars[i].is_none() && !self.bar_high[i];
        if !(index..index + regs).all(free) {
            return Err(ConfigSpaceError::BarUnavailable(index));
        }
        if !size.is_power_of_two() || size < 16 || (kind == BarKind::Memory32 && size > 1 << 31) {
            return Err(ConfigSpaceError::BarSize(size));
        }
        let mut type_bits: u32 = 0;
        if kind == BarKind::Memory64 {
            type_bits |= 0b100;
        }
        if prefetchable {
            type_bits |= 0b1000;
        }
        let mask = !(size - 1);
        let off = BAR0 + 4 * index;
        self.set_u32(off, type_bits);
        self.write_mask[off..off + 4].copy_from_slice(&((mask as u32) & !0xf).to_le_bytes());
        if kind == BarKind::Memory64 {
            self.set_u32(off + 4, 0);
            self.write_mask[off + 4..off + 8].copy_from_slice(&((mask >> 32) as u32).to_le_bytes());
            self.bar_high[index + 1] = true;
        }
        self.bars[index] = Some(Bar {
            size,
            kind,
            prefetchable,
        });
        Ok(())
    }

    /// Programs BAR `index` with `address` the way firmware does (the guest
    /// may move it later). Ignored for an undeclared BAR.
    pub fn set_bar_address(&mut self, index: usize, address: u64) {
        let Some(bar) = self.bars.get(index).copied().flatten() else {
            return;
        };
        let off = BAR0 + 4 * index;
        let addr = address & !(bar.size - 1);
        let low = (self.u32_at(off) & 0xf) | ((addr as u32) & !0xf);
        self.set_u32(off, low);
        if bar.kind == BarKind::Memory64 {
            self.set_u32(off + 4, (addr >> 32) as u32);
        }
    }

    /// The address BAR `index` currently holds, if it is declared.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bars.get(index).copied().flatten()?;
        let off = BAR0 + 4 * index;
        let mut addr = u64::from(self.u32_at(off) & !0xf);
        if bar.kind == BarKind::Memory64 {
            addr |= u64::from(self.u32_at(off + 4)) << 32;
        }
        Some(addr & !(bar.size - 1))
    }

    /// The declared BARs.
    pub fn bars(&self) -> Vec<BarInfo> {
        self.bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                b.map(|b| BarInfo {
                    index: i as u8,
                    size: b.size,
                    kind: b.kind,
                    prefetchable: b.prefetchable,
                })
            })
            .collect()
    }

    /// Appends a capability with this id; `body` follows the id and next
    /// pointer bytes and `writable` (same length as `body`, or shorter: the
    /// rest is read-only) masks the bits the guest may change. Returns the
    /// capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, ConfigSpaceError> {
        let len = body.len() + 2;
        let offset = self.next_cap;
        let end = offset + len;
        if end > CONFIG_SPACE_SIZE {
            return Err(ConfigSpaceError::CapabilityTooLarge(len));
        }
        self.bytes[offset] = id;
        self.bytes[offset + 1] = 0;
        self.bytes[offset + 2..end].copy_from_slice(body);
        for (i, m) in writable.iter().take(body.len()).enumerate() {
            self.write_mask[offset + 2 + i] = *m;
        }
        match self.last_cap {
            Some(prev) => self.bytes[prev + 1] = offset as u8,
            None => {
                self.bytes[CAP_POINTER] = offset as u8;
                self.bytes[STATUS] |= STATUS_CAP_LIST;
            }
        }
        self.last_cap = Some(offset);
        self.next_cap = (end + 3) & !3;
        Ok(offset)
    }

    /// Reads `data.len()` bytes at `offset`; bytes beyond the conventional
    /// space read as zero.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes `data` at `offset` through the write masks.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, v) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i).filter(|o| *o < CONFIG_SPACE_SIZE) else {
                return;
            };
            let mask = self.write_mask[o];
            self.bytes[o] = (self.bytes[o] & !mask) | (v & mask);
        }
    }

    /// The registers' values, for a snapshot.
    pub fn registers(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// Puts back registers that [`ConfigSpace::registers`] read from a
    /// function of the same layout: the guest-writable bits are taken from
    /// `saved`, and every read-only bit must already be equal. On an error
    /// nothing changes.
    pub fn restore_registers(&mut self, saved: &[u8]) -> Result<(), ConfigSpaceError> {
        if saved.len() != CONFIG_SPACE_SIZE {
            return Err(ConfigSpaceError::Mismatch {
                offset: saved.len(),
            });
        }
        if let Some(offset) =
            (0..CONFIG_SPACE_SIZE).find(|&o| (saved[o] ^ self.bytes[o]) & !self.write_mask[o] != 0)
        {
            return Err(ConfigSpaceError::Mismatch { offset });
        }
        self.bytes.copy_from_slice(saved);
        Ok(())
    }

    /// Reads the raw bytes of a capability body (for functions that interpret
    /// their own capabilities, such as MSI-X message control).
    pub fn raw(&self, offset: usize, len: usize) -> &[u8] {
        let start = offset.min(CONFIG_SPACE_SIZE);
        let end = offset.saturating_add(len).min(CONFIG_SPACE_SIZE);
        &self.bytes[start..end]
    }
}

impl ConfigSpace {
    /// The BARs decoded now: non-zero address and memory decoding enabled.
    pub fn mapped_bars(&self) -> Vec<BarRegion> {
        if self.command() & COMMAND_MEMORY == 0 {
            return Vec::new();
        }
        self.bars()
            .into_iter()
            .filter_map(|b| {
                let address = self.bar_address(usize::from(b.index))?;
                (address != 0).then_some(BarRegion {
                    index: b.index,
                    address,
                    size: b.size,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dword(c: &ConfigSpace, off: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn bar_sizing_and_masks() {
        let mut c = ConfigSpace::new(&PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1053,
            ..Default::default()
        });
        c.add_bar(0, 0x4000, BarKind::Memory64, false).unwrap();
        c.add_bar(2, 0x1000, BarKind::Memory32, true).unwrap();
        assert!(c.add_bar(1, 0x1000, BarKind::Memory32, false).is_err());
        assert!(c.add_bar(3, 0x1001, BarKind::Memory32, false).is_err());
        c.write(0x10, &[0xff; 4]);
        c.write(0x14, &[0xff; 4]);
        c.write(0x18, &[0xff; 4]);
        assert_eq!(dword(&c, 0x10), 0xffff_c004);
        assert_eq!(dword(&c, 0x14), 0xffff_ffff);
        assert_eq!(dword(&c, 0x18), 0xffff_f008);
        c.write(0x10, &0xe000_0000u32.to_le_bytes());
        c.write(0x14, &1u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0x1_e000_0000));
        assert!(c.mapped_bars().is_empty());
        c.write(0x04, &[0xff, 0xff]);
        assert_eq!(
            c.command(),
            COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE
        );
        assert_eq!(c.mapped_bars().len(), 2);
    }

    #[test]
    fn capability_chain() {
        let mut c = ConfigSpace::new(&PciHeader::default());
        let a = c.add_capability(0x09, &[1, 2, 3], &[]).unwrap();
        let b = c.add_capability(0x11, &[0; 10], &[0, 0xc0]).unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x48);
        let mut d = [0u8; 2];
        c.read(0x34, &mut d[..1]);
        assert_eq!(d[0], 0x40);
        c.read(0x40, &mut d);
        assert_eq!(d, [0x09, 0x48]);
        c.read(0x06, &mut d[..1]);
        assert_eq!(d[0] & 0x10, 0x10);
        c.write(0x4a, &[0xff, 0xff]);
        c.read(0x4a, &mut d);
        assert_eq!(d, [0, 0xc0]);
        assert!(c.add_capability(0x09, &[0; 250], &[]).is_err());
    }

    fn function(device_id: u16) -> ConfigSpace {
        let mut c = ConfigSpace::new(&PciHeader {
            vendor_id: 0x1af4,
            device_id,
            ..Default::default()
        });
        c.add_bar(0, 0x4000, BarKind::Memory64, false).unwrap();
        c.add_capability(0x11, &[0; 10], &[0, 0xc0]).unwrap();
        c
    }

    #[test]
    fn registers_come_back_into_a_function_of_the_same_layout() {
        let mut c = function(0x1048);
        c.write(0x10, &0xe000_0000u32.to_le_bytes());
        c.write(0x04, &[0x06, 0x00]);
        c.write(0x3c, &[11]);
        c.write(0x42, &[0x00, 0x80]);
        let saved = c.registers();
        let mut fresh = function(0x1048);
        fresh.restore_registers(&saved).unwrap();
        assert_eq!(fresh.bar_address(0), Some(0xe000_0000));
        assert_eq!(fresh.command(), COMMAND_MEMORY | COMMAND_BUS_MASTER);
        assert_eq!(fresh.interrupt_line(), 11);
        assert_eq!(fresh.raw(0x42, 2), [0x00, 0x80]);
    }

    #[test]
    fn registers_of_another_function_are_refused_and_change_nothing() {
        let mut other = function(0x1049);
        other.write(0x3c, &[5]);
        let mut c = function(0x1048);
        c.write(0x3c, &[9]);
        assert_eq!(
            c.restore_registers(&other.registers()),
            Err(ConfigSpaceError::Mismatch { offset: 2 }),
            "the device id differs"
        );
        assert_eq!(
            c.restore_registers(&[0; 64]),
            Err(ConfigSpaceError::Mismatch { offset: 64 })
        );
        let mut forged = c.registers();
        forged[0x10] |= 0x01; // an I/O BAR type bit in a memory BAR
        assert_eq!(
            c.restore_registers(&forged),
            Err(ConfigSpaceError::Mismatch { offset: 0x10 })
        );
        assert_eq!(c.interrupt_line(), 9);
    }
}
