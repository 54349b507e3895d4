//! Bus 0: up to 32 single-function slots, configuration access and BAR
//! decoding.

use std::sync::Arc;

use parking_lot::Mutex;

use super::bar::BarRegion;
use super::bar_alloc::{BarAllocError, BarAllocator};
use super::function::SharedFunction;
use super::host_bridge::HostBridge;
use crate::quiesce::{Pausable, PauseError};
use crate::snapshot::{DeviceState, Snapshottable, StateError};

/// Number of device slots on the bus.
pub const SLOT_COUNT: usize = 32;

/// Why a function could not be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// The slot number is not below 32, or is slot 0 (the host bridge).
    #[error("invalid slot {0}")]
    InvalidSlot(u8),
    /// The slot already holds a function.
    #[error("slot {0} is occupied")]
    SlotOccupied(u8),
    /// Every slot is occupied.
    #[error("no free slot on the bus")]
    BusFull,
    /// The slot is empty.
    #[error("slot {0} is empty")]
    SlotEmpty(u8),
    /// The BAR window cannot hold the function's BARs.
    #[error("BAR allocation failed: {0}")]
    BarAllocation(#[from] BarAllocError),
}

struct Slot {
    function: SharedFunction,
    /// BAR addresses taken from the allocator, freed on removal.
    allocated: Vec<u64>,
    /// What the function decodes now, refreshed after every config write.
    mapped: Vec<BarRegion>,
}

/// The PCI root bus (bus 0) with its host bridge and BAR window.
pub struct PciRoot {
    slots: Vec<Option<Slot>>,
    allocator: BarAllocator,
}

impl PciRoot {
    /// A bus whose slot 0 is a host bridge with these ids, assigning BARs in
    /// `[window_base, window_base + window_size)`.
    pub fn new(host_vendor: u16, host_device: u16, window_base: u64, window_size: u64) -> Self {
        let mut slots: Vec<Option<Slot>> = (0..SLOT_COUNT).map(|_| None).collect();
        let bridge: SharedFunction =
            Arc::new(Mutex::new(HostBridge::new(host_vendor, host_device)));
        slots[0] = Some(Slot {
            function: bridge,
            allocated: Vec::new(),
            mapped: Vec::new(),
        });
        PciRoot {
            slots,
            allocator: BarAllocator::new(window_base, window_size),
        }
    }

    /// The MMIO window BARs are assigned from, as `(base, size)`.
    pub fn bar_window(&self) -> (u64, u64) {
        (self.allocator.base(), self.allocator.size())
    }

    /// Adds `function` at `slot` (or the lowest free slot) and assigns its
    /// BARs from the window. Memory decoding stays off until the guest
    /// enables it. Works at any time (hotplug).
    pub fn add_function(
        &mut self,
        slot: Option<u8>,
        function: SharedFunction,
    ) -> Result<u8, PciError> {
        let slot = match slot {
            Some(s) if s == 0 || usize::from(s) >= SLOT_COUNT => {
                return Err(PciError::InvalidSlot(s));
            }
            Some(s) if self.slots[usize::from(s)].is_some() => {
                return Err(PciError::SlotOccupied(s));
            }
            Some(s) => s,
            None => (1..SLOT_COUNT as u8)
                .find(|s| self.slots[usize::from(*s)].is_none())
                .ok_or(PciError::BusFull)?,
        };
        let mut allocated = Vec::new();
        {
            let mut f = function.lock();
            let mut bars = f.bars();
            // Largest first keeps the window dense.
            bars.sort_by_key(|b| std::cmp::Reverse(b.size));
            for bar in bars {
                match self.allocator.allocate(bar.size) {
                    Ok(addr) => {
                        f.set_bar_address(bar.index, addr);
                        allocated.push(addr);
                    }
                    Err(e) => {
                        for a in allocated {
                            if let Err(free_err) = self.allocator.free(a) {
                                tracing::error!(%free_err, "freeing a BAR after a failed add");
                            }
                        }
                        return Err(e.into());
                    }
                }
            }
        }
        let mapped = function.lock().mapped_bars();
        self.slots[usize::from(slot)] = Some(Slot {
            function,
            allocated,
            mapped,
        });
        tracing::info!(slot, "PCI function added");
        Ok(slot)
    }

    /// Removes the function at `slot` and frees its BARs.
    pub fn remove_function(&mut self, slot: u8) -> Result<SharedFunction, PciError> {
        if slot == 0 || usize::from(slot) >= SLOT_COUNT {
            return Err(PciError::InvalidSlot(slot));
        }
        let entry = self.slots[usize::from(slot)]
            .take()
            .ok_or(PciError::SlotEmpty(slot))?;
        for a in entry.allocated {
            if let Err(e) = self.allocator.free(a) {
                tracing::error!(%e, slot, "freeing a removed function's BAR");
            }
        }
        tracing::info!(slot, "PCI function removed");
        Ok(entry.function)
    }

    /// The function at `slot`, if any.
    pub fn function(&self, slot: u8) -> Option<SharedFunction> {
        self.slots
            .get(usize::from(slot))?
            .as_ref()
            .map(|s| s.function.clone())
    }

    /// The BARs the function at `slot` decodes now.
    pub fn mapped_bars(&self, slot: u8) -> Vec<BarRegion> {
        self.slots
            .get(usize::from(slot))
            .and_then(|s| s.as_ref())
            .map(|s| s.mapped.clone())
            .unwrap_or_default()
    }

    fn target(&self, bus: u8, device: u8, function: u8) -> Option<&Slot> {
        if bus != 0 || function != 0 {
            return None;
        }
        self.slots.get(usize::from(device))?.as_ref()
    }

    /// A configuration read; absent functions read as all ones.
    pub fn config_read(&self, bus: u8, device: u8, function: u8, offset: u16, data: &mut [u8]) {
        match self.target(bus, device, function) {
            Some(slot) if usize::from(offset) + data.len() <= 4096 => {
                slot.function.lock().config_read(offset, data);
            }
            _ => data.fill(0xff),
        }
    }

    /// A configuration write; ignored for absent functions.
    pub fn config_write(&mut self, bus: u8, device: u8, function: u8, offset: u16, data: &[u8]) {
        if bus != 0 || function != 0 || usize::from(offset) + data.len() > 4096 {
            return;
        }
        let Some(Some(slot)) = self.slots.get_mut(usize::from(device)) else {
            return;
        };
        let mut f = slot.function.lock();
        f.config_write(offset, data);
        slot.mapped = f.mapped_bars();
    }

    /// Re-reads what every function decodes, for when registers changed
    /// other than through a configuration write (a snapshot restored into
    /// the functions).
    pub fn refresh_decoding(&mut self) {
        for slot in self.slots.iter_mut().flatten() {
            slot.mapped = slot.function.lock().mapped_bars();
        }
    }

    fn decode(&self, address: u64, len: usize) -> Option<(&Slot, u8, u64)> {
        self.slots.iter().flatten().find_map(|slot| {
            slot.mapped.iter().find_map(|r| {
                let offset = address.checked_sub(r.address)?;
                let end = offset.checked_add(len as u64)?;
                (end <= r.size).then_some((slot, r.index, offset))
            })
        })
    }

    /// A guest read at `address` in the BAR window; false (and all ones) if
    /// no mapped BAR covers it.
    pub fn mmio_read(&self, address: u64, data: &mut [u8]) -> bool {
        match self.decode(address, data.len()) {
            Some((slot, bar, offset)) => {
                slot.function.lock().bar_read(bar, offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// A guest write at `address` in the BAR window; false if no mapped BAR covers it.
    pub fn mmio_write(&self, address: u64, data: &[u8]) -> bool {
        match self.decode(address, data.len()) {
            Some((slot, bar, offset)) => {
                slot.function.lock().bar_write(bar, offset, data);
                true
            }
            None => false,
        }
    }
}

impl PciRoot {
    fn functions(&self) -> impl Iterator<Item = (u8, &SharedFunction)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| s.as_ref().map(|s| (slot as u8, &s.function)))
    }
}

/// The kind and version of the bus's state in a snapshot.
const STATE_KIND: &str = "pci-root";
const STATE_VERSION: u32 = 1;

/// One slot as a snapshot keeps it: where the root placed the function's
/// BARs, and the function's own state.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedSlot {
    slot: u8,
    bars: Vec<u64>,
    function: DeviceState,
}

/// A snapshot of the bus is every function's state, by slot. Saving needs
/// every function paused (each refuses otherwise); a function that cannot
/// save its state refuses the whole bus.
impl Snapshottable for PciRoot {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let mut slots = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            slots.push(SavedSlot {
                slot: index as u8,
                bars: slot.allocated.clone(),
                function: slot.function.lock().save_state()?,
            });
        }
        DeviceState::new(STATE_KIND, STATE_VERSION, &slots)
    }

    /// Restores into a bus the VMM has rebuilt: the same functions in the
    /// same slots, with their BARs placed where they were (refused
    /// otherwise, before any function changes), each paused. A function
    /// that refuses its state fails the restore with the functions before
    /// it already restored: the VMM discards the VM it was building.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let saved: Vec<SavedSlot> = state.decode(STATE_KIND, STATE_VERSION)?;
        let present: Vec<(u8, Vec<u64>)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u8, s.allocated.clone())))
            .collect();
        let wanted: Vec<(u8, Vec<u64>)> = saved.iter().map(|s| (s.slot, s.bars.clone())).collect();
        if present != wanted {
            return Err(StateError::Invalid(format!(
                "slots and BARs {wanted:x?} saved, {present:x?} on the bus"
            )));
        }
        for s in &saved {
            if let Some(Some(slot)) = self.slots.get(usize::from(s.slot)) {
                slot.function.lock().restore_state(&s.function)?;
            }
        }
        self.refresh_decoding();
        Ok(())
    }
}

/// Pausing the bus pauses every function on it, in slot order; resuming
/// resumes them all (a function that fails to resume does not keep the
/// others paused; the first error is returned).
impl Pausable for PciRoot {
    fn pause(&mut self) -> Result<(), PauseError> {
        let mut paused: Vec<&SharedFunction> = Vec::new();
        for (slot, function) in self.functions() {
            if let Err(e) = function.lock().pause() {
                // All or nothing: what was paused runs again.
                for f in paused {
                    if let Err(e) = f.lock().resume() {
                        tracing::error!(slot, "PCI function did not resume: {e}");
                    }
                }
                return Err(e);
            }
            paused.push(function);
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PauseError> {
        let mut first_error = None;
        for (slot, function) in self.functions() {
            if let Err(e) = function.lock().resume() {
                tracing::error!(slot, "PCI function did not resume: {e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
