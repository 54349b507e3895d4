//! [`DeviceHub`]: the PCI slots of one VM, before and while it runs.
//!
//! Every hot-pluggable device (virtio-scsi controllers, virtio-pmem,
//! virtio-net, virtio-fs) is a virtio-pci function on the root bus, in the
//! slot the [slot map](super::slots) gives it. The managers hand the hub a
//! device model and a slot; the hub decides what that means in the VM's
//! current state, so cold plug and hot plug are one call:
//!
//! | VM state | [`DeviceHub::plug`] | [`DeviceHub::unplug`] |
//! |----------|---------------------|-----------------------|
//! | created  | the device waits in the plan; [`DeviceHub::attach`] puts it on the bus before the guest boots | gone at once; the signal is already complete |
//! | running, guest not using the slot yet | on the bus, slot marked up, GPE raised | gone at once (no eject handler would answer yet) |
//! | running  | on the bus; the hotplug block marks the slot up and GPE [`PCIHP_GPE`] raises the SCI: the guest's `\_GPE._E01` notifies the slot and acpiphp scans it | slot marked down, GPE raised; the guest unbinds its driver and calls `_EJ0`, whose write reaches [`DeviceHub::on_eject`] through the control thread: only then does the function leave the bus and the signal complete |
//! | stopped  | refused (`Stopped`) | refused; [`DeviceHub::shut_down`] completed every pending signal |
//!
//! "Not using the slot yet" means the guest has not enabled the hotplug
//! GPE (its ACPI is still booting) and no driver enabled the function's
//! decoding: an eject request would then find no handler.
//!
//! A device may come with guest memory of its own (virtio-pmem's window,
//! [`ExtraMemory`]): the hub registers it as a KVM memory slot when the
//! device goes on the bus and deletes it after the guest ejected it.
//!
//! Locks: the hub's lock is taken inside the hub only, and below it the
//! root's and the functions' (hub, then root, then function). The PM block
//! and the hotplug register block are taken with the hub's lock released.
//! A removal's [`ReleaseSignal`] completes with no hub lock held, after the
//! function and its memory are gone (so whoever waits on it never sees the
//! id free while the host still holds the device).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use kvm_ioctls::VmFd;
use parking_lot::{Mutex, MutexGuard};
use uvm_devices::acpi::pci_hotplug::{PCIHP_GPE, PciHotplug};
use uvm_devices::acpi::pm::PmDevice;
use uvm_devices::interrupt::{MsiSink, NoIrq};
use uvm_devices::ioevent::IoEventRegistry;
use uvm_devices::pci::{PciRoot, SharedFunction};
use uvm_devices::release::ReleaseSignal;
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::worker::{KickCount, PanicHook};
use uvm_devices::virtio::{GuestMemoryHandle, VirtioDevice};

use super::memslots::{ExtraMemory, MemSlots};

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
    /// Where the device workers' queue kicks are tied to notification
    /// addresses.
    pub ioevents: Arc<dyn IoEventRegistry>,
    /// Told when a device worker panicked (the VM ends).
    pub on_panic: Option<PanicHook>,
    /// Where the device workers count the kicks they receive.
    pub kick_count: KickCount,
}

struct Plugged {
    what: String,
    /// The device until it is on the bus.
    device: Option<Box<dyn VirtioDevice>>,
    memory: Option<ExtraMemory>,
    memslot: Option<u32>,
    /// The removal under way: completes when the guest ejects the slot.
    removing: Option<ReleaseSignal>,
}

#[derive(Default)]
struct HubState {
    slots: BTreeMap<u8, Plugged>,
    /// Slots handed out by `reserve_slot` and not plugged yet.
    reserved: BTreeSet<u8>,
    live: Option<LiveBus>,
    stopped: bool,
    memslots: MemSlots,
}

/// The PCI slots of one VM. See the [module documentation](self).
pub struct DeviceHub {
    vm_id: String,
    state: Mutex<HubState>,
}

impl HubState {
    /// Takes `plugged` off the bus at `slot` (if live) and deletes its
    /// memory slot; returns the function for the caller to drop.
    fn detach(&mut self, slot: u8, plugged: &Plugged) -> Option<SharedFunction> {
        let function = self
            .live
            .as_ref()
            .and_then(|l| l.root.lock().remove_function(slot).ok());
        if let (Some(memslot), Some(memory)) = (plugged.memslot, plugged.memory.as_ref()) {
            let vm = self.live.as_ref().map(|l| l.vm.clone());
            self.memslots.unmap(vm.as_deref(), memslot, memory);
        }
        function
    }
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
                if let Err(e) = hotplug.lock().announce_add(slot) {
                    tracing::error!(vm = %self.vm_id, slot, "announcing {what}: {e}");
                }
                raise_hotplug_gpe(&self.vm_id, &pm);
                tracing::info!(vm = %self.vm_id, slot, "{what} hot-added");
            }
        }
        Ok(())
    }

    /// Removes the device in `slot`. The returned signal completes once the
    /// guest has ejected it (at the stop at the latest), or at once when the
    /// guest cannot be using it (see the [module documentation](self)).
    pub fn unplug(&self, slot: u8) -> Result<ReleaseSignal, HubError> {
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
            Some((_, pm, root)) => {
                pm.lock().gpe_enabled(PCIHP_GPE) || function_decoding(root, slot)
            }
        };
        let mut state = self.lock();
        check_removable(&state, slot)?;
        if !in_use {
            let Some(plugged) = state.slots.remove(&slot) else {
                return Err(HubError::SlotEmpty(slot));
            };
            let function = state.detach(slot, &plugged);
            drop(state);
            tracing::info!(vm = %self.vm_id, slot, "{} removed (the guest was not using it)", plugged.what);
            drop((function, plugged));
            return Ok(ReleaseSignal::done());
        }
        let Some((hotplug, pm, _)) = live else {
            return Err(HubError::Stopped);
        };
        let signal = ReleaseSignal::pending();
        if let Some(plugged) = state.slots.get_mut(&slot) {
            plugged.removing = Some(signal.clone());
            tracing::info!(vm = %self.vm_id, slot, "{}: asking the guest to eject", plugged.what);
        }
        drop(state);
        if let Err(e) = hotplug.lock().request_removal(slot) {
            tracing::error!(vm = %self.vm_id, slot, "requesting removal: {e}");
        }
        raise_hotplug_gpe(&self.vm_id, &pm);
        Ok(signal)
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
    /// signal completes.
    pub fn on_eject(&self, slot: u8) {
        let mut state = self.lock();
        let pending = state.slots.get(&slot).is_some_and(|p| p.removing.is_some());
        if !pending {
            tracing::warn!(vm = %self.vm_id, slot, "the guest ejected a slot with no removal pending; ignored");
            return;
        }
        let Some(mut plugged) = state.slots.remove(&slot) else {
            return;
        };
        let function = state.detach(slot, &plugged);
        drop(state);
        tracing::info!(vm = %self.vm_id, slot, "{} ejected by the guest", plugged.what);
        let signal = plugged.removing.take();
        // The function (and with it the device model and its threads) and
        // the device memory go before anyone is told the id is free.
        drop((function, plugged));
        if let Some(signal) = signal {
            signal.complete();
        }
    }

    /// The VM stopped (or never started): the bus is gone, every pending
    /// removal completes and the devices are dropped.
    pub fn shut_down(&self) {
        let (signals, slots, live) = {
            let mut state = self.lock();
            state.stopped = true;
            let mut slots = std::mem::take(&mut state.slots);
            let signals: Vec<ReleaseSignal> = slots
                .values_mut()
                .filter_map(|p| p.removing.take())
                .collect();
            (signals, slots, state.live.take())
        };
        // Device memory slots die with the VM fd; drop the bus before the
        // mappings so that no vCPU can still reach them.
        drop(live);
        drop(slots);
        for signal in signals {
            signal.complete();
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
    let Some(function) = root.lock().function(slot) else {
        return false;
    };
    let mut command = [0u8; 2];
    function.lock().config_read(PCI_COMMAND, &mut command);
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
        VirtioPciDevice::new(device, live.mem.clone(), live.msi.clone(), Arc::new(NoIrq))
            .map_err(|e| {
                HubError::Device(format!("virtio-pci transport for {}: {e}", plugged.what))
            })?
            .with_worker(
                &worker_name(slot),
                live.ioevents.clone(),
                live.on_panic.clone(),
            )
            .counting_kicks_in(live.kick_count.clone());
    let root = live.root.clone();
    let vm = live.vm.clone();
    if let Some(memory) = plugged.memory.as_ref() {
        plugged.memslot = Some(state.memslots.map(&vm, memory).map_err(HubError::Device)?);
    }
    let shared: SharedFunction = Arc::new(Mutex::new(function));
    if let Err(e) = root.lock().add_function(Some(slot), shared) {
        if let (Some(memslot), Some(memory)) = (plugged.memslot.take(), plugged.memory.as_ref()) {
            state.memslots.unmap(Some(&vm), memslot, memory);
        }
        return Err(HubError::Device(format!(
            "{} on slot {slot}: {e}",
            plugged.what
        )));
    }
    Ok(())
}

/// The name of the device worker thread of the function in `slot` (the
/// kernel keeps 15 bytes of a thread name).
pub fn worker_name(slot: u8) -> String {
    format!("virtio-slot{slot}")
}

fn raise_hotplug_gpe(vm_id: &str, pm: &Mutex<PmDevice>) {
    match pm.lock().raise_gpe(PCIHP_GPE) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            vm = %vm_id,
            "the guest has not enabled the PCI hotplug GPE yet; it sees the change when it does"
        ),
        Err(e) => tracing::error!(vm = %vm_id, "raising the PCI hotplug GPE: {e}"),
    }
}
