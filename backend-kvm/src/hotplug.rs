//! [`DeviceHub`]: the PCI slots of one VM, before and while it runs.
//!
//! Every hot-pluggable device (virtio-scsi controllers, virtio-pmem,
//! virtio-net) is a virtio-pci function on the root bus. The managers hand
//! the hub a device model and a slot; the hub decides what that means in the
//! VM's current state, so cold plug and hot plug are one call:
//!
//! - **created**: the device waits in the plan; at start it goes on the bus
//!   before the guest boots (the guest finds it when it enumerates PCI);
//!   removing it drops it at once.
//! - **running**: the function goes on the bus, the hotplug register block
//!   marks the slot up and GPE [`PCIHP_GPE`] raises the SCI; the guest's
//!   `\_GPE._E01` method notifies the slot and acpiphp scans it. A removal
//!   marks the slot down; the guest unbinds its driver and calls the slot's
//!   `_EJ0`, whose write reaches [`DeviceHub::on_eject`] through the VMM's
//!   control thread; only then does the function leave the bus and the
//!   caller's completion run (two-phase removal).
//! - **stopped**: every pending removal completes (the devices are gone).
//!
//! A device may come with guest memory of its own (virtio-pmem's window,
//! [`ExtraMemory`]): the hub registers it as a KVM memory slot when the
//! device goes on the bus and unregisters it after the guest ejected it.
//!
//! Lock order: the hub's lock is never held while the hotplug register
//! block or the PM block is locked, and completions run with no lock held
//! (ejects arrive on the control thread, not on the vCPU thread that wrote
//! the eject register), so managers may hold their own lock while calling
//! into the hub.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use kvm_bindings::{KVM_MEM_READONLY, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;
use parking_lot::{Mutex, MutexGuard};
use uvm_devices::acpi::pci_hotplug::{PCIHP_GPE, PciHotplug};
use uvm_devices::acpi::pm::PmDevice;
use uvm_devices::interrupt::{MsiSink, NoIrq};
use uvm_devices::pci::{PciRoot, SharedFunction};
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::{GuestMemoryHandle, VirtioDevice};

/// Slots the DSDT declares hot-pluggable (slot 0 is the host bridge, slot
/// 1 the virtio-vsock function).
pub const HOTPLUG_SLOTS: RangeInclusive<u8> = 2..=31;
/// First KVM memory slot number for device memory (guest RAM uses the
/// lower numbers).
const FIRST_DEVICE_MEMSLOT: u32 = 16;

/// Why the hub refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// Every slot in the range is taken.
    #[error("no free PCI slot in {0:?}")]
    NoFreeSlot(RangeInclusive<u8>),
    /// The slot is taken (or still being ejected).
    #[error("PCI slot {0} is in use")]
    SlotInUse(u8),
    /// Nothing is plugged in the slot.
    #[error("PCI slot {0} is empty")]
    SlotEmpty(u8),
    /// A removal of the slot is already under way.
    #[error("PCI slot {0} is already being removed")]
    AlreadyRemoving(u8),
    /// The VM has stopped.
    #[error("the VM has stopped")]
    Stopped,
    /// The bus or the KVM memory slot refused the device.
    #[error("{0}")]
    Device(String),
}

/// Guest memory that belongs to a device (a virtio-pmem window): a host
/// mapping the owner keeps alive as long as this value lives.
pub struct ExtraMemory {
    /// Guest-physical base address.
    pub guest_address: u64,
    /// Host virtual address of the mapping.
    pub host_address: u64,
    /// Length in bytes (page aligned).
    pub len: u64,
    /// Whether the guest may only read it.
    pub read_only: bool,
    /// Keeps the mapping alive (unmapped on drop).
    pub owner: Box<dyn Send>,
}

/// Runs once the guest has released a removed device (or the VM stopped).
pub type EjectDone = Box<dyn FnOnce() + Send>;

/// What the hub needs of a running VM.
pub struct LiveBus {
    /// The VM (for device memory slots).
    pub vm: Arc<VmFd>,
    /// The root bus.
    pub root: Arc<Mutex<PciRoot>>,
    /// The hotplug register block.
    pub hotplug: Arc<Mutex<PciHotplug>>,
    /// The PM block whose GPE0 announces hotplug events.
    pub pm: Arc<Mutex<PmDevice>>,
    /// Guest memory, for the virtio transports.
    pub mem: GuestMemoryHandle,
    /// Where MSI-X messages go.
    pub msi: Arc<dyn MsiSink>,
}

struct Plugged {
    what: String,
    /// The device until it is on the bus.
    device: Option<Box<dyn VirtioDevice>>,
    memory: Option<ExtraMemory>,
    memslot: Option<u32>,
    /// Completions waiting for the guest's eject.
    removing: Option<Vec<EjectDone>>,
}

#[derive(Default)]
struct HubState {
    slots: BTreeMap<u8, Plugged>,
    /// Slots handed out by `reserve_slot` and not plugged yet.
    reserved: BTreeSet<u8>,
    live: Option<LiveBus>,
    stopped: bool,
    free_memslots: BTreeSet<u32>,
    next_memslot: Option<u32>,
}

/// The PCI slots of one VM. See the [module documentation](self).
pub struct DeviceHub {
    vm_id: String,
    state: Mutex<HubState>,
}

fn memslot_region(slot: u32, m: &ExtraMemory, size: u64) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region {
        slot,
        flags: if m.read_only { KVM_MEM_READONLY } else { 0 },
        guest_phys_addr: m.guest_address,
        memory_size: size,
        userspace_addr: m.host_address,
    }
}

impl HubState {
    fn take_memslot(&mut self) -> u32 {
        if let Some(s) = self.free_memslots.pop_first() {
            return s;
        }
        let s = self.next_memslot.unwrap_or(FIRST_DEVICE_MEMSLOT);
        self.next_memslot = Some(s + 1);
        s
    }
}

/// Registers `memory` with KVM at a fresh memory slot.
fn map_memory(state: &mut HubState, memory: &ExtraMemory) -> Result<u32, HubError> {
    let live = state.live.as_ref().ok_or(HubError::Stopped)?;
    let vm = live.vm.clone();
    let slot = state.take_memslot();
    // SAFETY: the host range is a live mapping of `memory.len` bytes kept
    // alive by `memory.owner`, which the hub holds until after the slot is
    // deleted again (`unmap_memory`) or the VM is gone.
    let result = unsafe { vm.set_user_memory_region(memslot_region(slot, memory, memory.len)) };
    match result {
        Ok(()) => Ok(slot),
        Err(e) => {
            state.free_memslots.insert(slot);
            Err(HubError::Device(format!(
                "KVM_SET_USER_MEMORY_REGION for device memory at {:#x}: {e}",
                memory.guest_address
            )))
        }
    }
}

/// Deletes the KVM memory slot of `memory`.
fn unmap_memory(state: &mut HubState, slot: u32, memory: &ExtraMemory) {
    if let Some(live) = state.live.as_ref() {
        // SAFETY: a zero size deletes the slot; no host memory is referenced.
        let result = unsafe {
            live.vm
                .set_user_memory_region(memslot_region(slot, memory, 0))
        };
        if let Err(e) = result {
            tracing::error!("deleting KVM memory slot {slot}: {e}");
            return;
        }
    }
    state.free_memslots.insert(slot);
}

impl DeviceHub {
    /// An empty hub for VM `vm_id`.
    pub fn new(vm_id: &str) -> Self {
        DeviceHub {
            vm_id: vm_id.to_owned(),
            state: Mutex::new(HubState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock()
    }

    /// Reserves the lowest free slot in `range` for a coming [`DeviceHub::plug`]
    /// (which consumes the reservation, even when it fails); give it back
    /// with [`DeviceHub::unreserve`] if the device is not plugged after all.
    pub fn reserve_slot(&self, range: RangeInclusive<u8>) -> Result<u8, HubError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(HubError::Stopped);
        }
        let slot = range
            .clone()
            .find(|s| !state.slots.contains_key(s) && !state.reserved.contains(s))
            .ok_or(HubError::NoFreeSlot(range))?;
        state.reserved.insert(slot);
        Ok(slot)
    }

    /// Gives back a slot reserved and not plugged.
    pub fn unreserve(&self, slot: u8) {
        self.lock().reserved.remove(&slot);
    }

    /// Plugs `device` into `slot` (cold before start, hot while running);
    /// `what` names it in logs. `memory`, if any, becomes guest memory with it.
    pub fn plug(
        &self,
        slot: u8,
        what: &str,
        device: Box<dyn VirtioDevice>,
        memory: Option<ExtraMemory>,
    ) -> Result<(), HubError> {
        let announce = {
            let mut state = self.lock();
            let reserved = state.reserved.remove(&slot);
            if state.stopped {
                return Err(HubError::Stopped);
            }
            if state.slots.contains_key(&slot) || (!reserved && state.reserved.contains(&slot)) {
                return Err(HubError::SlotInUse(slot));
            }
            let mut plugged = Plugged {
                what: what.to_owned(),
                device: Some(device),
                memory,
                memslot: None,
                removing: None,
            };
            let announce = match state.live.as_ref() {
                None => None,
                Some(_) => {
                    put_on_bus(&mut state, slot, &mut plugged)?;
                    state
                        .live
                        .as_ref()
                        .map(|l| (l.hotplug.clone(), l.pm.clone()))
                }
            };
            state.slots.insert(slot, plugged);
            announce
        };
        match announce {
            None => tracing::info!(vm = %self.vm_id, slot, "{what} planned (cold plug)"),
            Some((hotplug, pm)) => {
                if let Err(e) = lock(&hotplug).announce_add(slot) {
                    tracing::error!(vm = %self.vm_id, slot, "announcing {what}: {e}");
                }
                raise_hotplug_gpe(&self.vm_id, &pm);
                tracing::info!(vm = %self.vm_id, slot, "{what} hot-added");
            }
        }
        Ok(())
    }

    /// Removes the device in `slot`. `done` runs once the guest has ejected
    /// it (at the stop at the latest).
    ///
    /// The device goes at once, and `done` is handed back for the caller to
    /// run once it has released its own locks, when the guest cannot be
    /// using it: before start, or while the guest is still booting (its
    /// ACPI has not enabled the hotplug GPE yet and no driver has enabled
    /// the function's decoding), when an eject request would find no
    /// handler.
    pub fn unplug(&self, slot: u8, done: EjectDone) -> Result<Option<EjectDone>, HubError> {
        let live = {
            let state = self.lock();
            check_removable(&state, slot)?;
            state
                .live
                .as_ref()
                .map(|l| (l.hotplug.clone(), l.pm.clone(), l.root.clone()))
        };
        let in_use = match &live {
            None => false,
            Some((_, pm, root)) => lock(pm).gpe_enabled(PCIHP_GPE) || function_decoding(root, slot),
        };
        let mut state = self.lock();
        check_removable(&state, slot)?;
        if !in_use {
            let function = state
                .live
                .as_ref()
                .and_then(|l| lock(&l.root).remove_function(slot).ok());
            let plugged = state.slots.remove(&slot);
            if let Some(p) = &plugged {
                if let (Some(memslot), Some(memory)) = (p.memslot, p.memory.as_ref()) {
                    unmap_memory(&mut state, memslot, memory);
                }
                tracing::info!(vm = %self.vm_id, slot, "{} removed (the guest was not using it)", p.what);
            }
            drop(state);
            drop((function, plugged));
            return Ok(Some(done));
        }
        let Some((hotplug, pm, _)) = live else {
            return Err(HubError::Stopped);
        };
        if let Some(plugged) = state.slots.get_mut(&slot) {
            plugged.removing = Some(vec![done]);
            tracing::info!(vm = %self.vm_id, slot, "{}: asking the guest to eject", plugged.what);
        }
        drop(state);
        if let Err(e) = lock(&hotplug).request_removal(slot) {
            tracing::error!(vm = %self.vm_id, slot, "requesting removal: {e}");
        }
        raise_hotplug_gpe(&self.vm_id, &pm);
        Ok(None)
    }

    /// Makes the bus live at start: every planned device goes on it (before
    /// the guest boots, so no hotplug event is raised).
    pub fn attach(&self, live: LiveBus) -> Result<(), HubError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(HubError::Stopped);
        }
        state.live = Some(live);
        let slots: Vec<u8> = state.slots.keys().copied().collect();
        for slot in slots {
            let Some(mut plugged) = state.slots.remove(&slot) else {
                continue;
            };
            let result = put_on_bus(&mut state, slot, &mut plugged);
            let what = plugged.what.clone();
            state.slots.insert(slot, plugged);
            result.map_err(|e| HubError::Device(format!("{what} in slot {slot}: {e}")))?;
        }
        Ok(())
    }

    /// The guest ejected `slot` (called on the VMM's control thread): the
    /// function leaves the bus, its memory is unmapped and the removal's
    /// completions run.
    pub fn on_eject(&self, slot: u8) {
        let (dones, function) = {
            let mut state = self.lock();
            let pending = state.slots.get(&slot).is_some_and(|p| p.removing.is_some());
            if !pending {
                tracing::warn!(vm = %self.vm_id, slot, "the guest ejected a slot with no removal pending; ignored");
                return;
            }
            let Some(plugged) = state.slots.remove(&slot) else {
                return;
            };
            let function = state
                .live
                .as_ref()
                .and_then(|l| lock(&l.root).remove_function(slot).ok());
            if let (Some(memslot), Some(memory)) = (plugged.memslot, plugged.memory.as_ref()) {
                unmap_memory(&mut state, memslot, memory);
            }
            tracing::info!(vm = %self.vm_id, slot, "{} ejected by the guest", plugged.what);
            (
                plugged.removing.unwrap_or_default(),
                (function, plugged.memory),
            )
        };
        // The function (and with it the device model and its threads) and
        // the device memory go before anyone is told the id is free.
        drop(function);
        for done in dones {
            done();
        }
    }

    /// The VM stopped (or never started): the bus is gone, every pending
    /// removal completes and the devices are dropped.
    pub fn shut_down(&self) {
        let (dones, slots, live) = {
            let mut state = self.lock();
            state.stopped = true;
            let slots = std::mem::take(&mut state.slots);
            let live = state.live.take();
            let mut dones = Vec::new();
            let mut kept = Vec::new();
            for (_, mut p) in slots {
                dones.extend(p.removing.take().unwrap_or_default());
                kept.push(p);
            }
            (dones, kept, live)
        };
        // Device memory slots die with the VM fd; drop the bus before the
        // mappings so that no vCPU can still reach them.
        drop(live);
        drop(slots);
        for done in dones {
            done();
        }
    }
}

/// Refuses a removal of `slot` that cannot start.
fn check_removable(state: &HubState, slot: u8) -> Result<(), HubError> {
    if state.stopped {
        return Err(HubError::Stopped);
    }
    match state.slots.get(&slot) {
        None => Err(HubError::SlotEmpty(slot)),
        Some(p) if p.removing.is_some() => Err(HubError::AlreadyRemoving(slot)),
        Some(_) => Ok(()),
    }
}

/// Whether the function in `slot` has memory or I/O decoding enabled (a
/// driver or firmware set it up).
fn function_decoding(root: &Mutex<PciRoot>, slot: u8) -> bool {
    let Some(function) = lock(root).function(slot) else {
        return false;
    };
    let mut command = [0u8; 2];
    lock(&function).config_read(PCI_COMMAND, &mut command);
    u16::from_le_bytes(command) & (COMMAND_MEMORY | COMMAND_IO) != 0
}

/// Offset of the PCI command register.
const PCI_COMMAND: u16 = 0x04;
/// Command register: I/O space decoding.
const COMMAND_IO: u16 = 1 << 0;
/// Command register: memory space decoding.
const COMMAND_MEMORY: u16 = 1 << 1;

/// Wraps `plugged`'s device in a virtio-pci transport and adds it to the
/// live bus at `slot`, with its device memory.
fn put_on_bus(state: &mut HubState, slot: u8, plugged: &mut Plugged) -> Result<(), HubError> {
    let Some(device) = plugged.device.take() else {
        return Ok(());
    };
    let live = state.live.as_ref().ok_or(HubError::Stopped)?;
    let function =
        VirtioPciDevice::new(device, live.mem.clone(), live.msi.clone(), Arc::new(NoIrq)).map_err(
            |e| HubError::Device(format!("virtio-pci transport for {}: {e}", plugged.what)),
        )?;
    let root = live.root.clone();
    if let Some(memory) = plugged.memory.as_ref() {
        plugged.memslot = Some(map_memory(state, memory)?);
    }
    let shared: SharedFunction = Arc::new(Mutex::new(function));
    if let Err(e) = lock(&root).add_function(Some(slot), shared) {
        if let (Some(memslot), Some(memory)) = (plugged.memslot.take(), plugged.memory.as_ref()) {
            unmap_memory(state, memslot, memory);
        }
        return Err(HubError::Device(format!(
            "{} on slot {slot}: {e}",
            plugged.what
        )));
    }
    Ok(())
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

fn raise_hotplug_gpe(vm_id: &str, pm: &Mutex<PmDevice>) {
    match lock(pm).raise_gpe(PCIHP_GPE) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            vm = %vm_id,
            "the guest has not enabled the PCI hotplug GPE yet; it sees the change when it does"
        ),
        Err(e) => tracing::error!(vm = %vm_id, "raising the PCI hotplug GPE: {e}"),
    }
}
