//! The PC platform devices on the port bus: COM1 `0x3f8` (IRQ 4) with the
//! console behind it, the i8042 reset line `0x60`-`0x64`, CMOS `0x70`,
//! pvpanic `0x505`, the ACPI PM block `0x600` (SCI on IRQ 9) and the PCI
//! hotplug register block `0xae00`. Guest requests (power-off, reset,
//! panic) and ejects leave them through [`GuestEvents`] (bounded). KVM's
//! in-kernel PIC/IOAPIC/LAPIC and PIT handle the rest of the platform.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvm_ioctls::VmFd;
use parking_lot::Mutex;
use uvm_api::UvmConfig;
use uvm_devices::acpi::pci_hotplug::{PCIHP_BASE, PCIHP_LEN, PciHotplug};
use uvm_devices::acpi::pm::{PM_BASE, PM_LEN, PmDevice, SCI_IRQ};
use uvm_devices::bus::{Bus, SharedDevice};
use uvm_devices::legacy::RequestSink;
use uvm_devices::legacy::cmos::{CMOS_BASE, CMOS_PORTS, Cmos};
use uvm_devices::legacy::i8042::{I8042, I8042_BASE, I8042_PORTS};
use uvm_devices::legacy::pvpanic::{PVPANIC_PORT, PvPanic};
use uvm_devices::legacy::serial::{COM1_BASE, COM1_IRQ, Serial, UART_PORTS};
use uvm_devices::snapshot::{DeviceState, Snapshottable, StateError};

use crate::coalesced::{CoalescedWrites, UartBatching};
use crate::console::{ConsoleTap, ConsoleWriter};
use crate::control::guest_events::GuestEvents;
use crate::error::VmmError;
use crate::irq::irq_line;

/// The port bus and the platform devices the VMM drives itself.
pub struct Platform {
    /// The port bus (PCI configuration ports are added to it after).
    pub io_bus: Bus,
    /// The ACPI PM block (power button, GPEs).
    pub pm: Arc<Mutex<PmDevice>>,
    /// The PCI hotplug register block.
    pub hotplug: Arc<Mutex<PciHotplug>>,
    /// The devices whose state a snapshot keeps.
    pub stateful: PlatformDevices,
}

/// The platform devices with state worth a snapshot, by name: COM1, the
/// i8042, CMOS, the ACPI PM block and the PCI hotplug block. pvpanic has
/// none (it only reports); the PICs, IOAPIC and PIT are KVM's and come
/// with the VM's state.
#[derive(Clone)]
pub struct PlatformDevices {
    devices: BTreeMap<&'static str, Arc<Mutex<dyn Snapshottable + Send>>>,
}

impl PlatformDevices {
    /// Every device's state, by name; refused as a whole if one refuses.
    pub fn save(&self) -> Result<BTreeMap<String, DeviceState>, StateError> {
        self.devices
            .iter()
            .map(|(name, device)| Ok(((*name).to_owned(), device.lock().save_state()?)))
            .collect()
    }

    /// Puts back what [`PlatformDevices::save`] returned: a state for
    /// every device and none for a device this VM does not have. On an
    /// error the devices before the failing one are already restored (a
    /// restore builds a new VM, which it discards on an error).
    pub fn restore(&self, states: &BTreeMap<String, DeviceState>) -> Result<(), StateError> {
        let names: Vec<&str> = states.keys().map(String::as_str).collect();
        let mine: Vec<&str> = self.devices.keys().copied().collect();
        if names != mine {
            return Err(StateError::Invalid(format!(
                "platform devices {names:?} saved, {mine:?} in this VM"
            )));
        }
        for (name, device) in &self.devices {
            if let Some(state) = states.get(*name) {
                device.lock().restore_state(state)?;
            }
        }
        Ok(())
    }
}

/// Puts the platform devices of `config`'s VM on a new port bus; console
/// output goes to `tap` and the configured sink, guest requests and ejects
/// to `events` (bounded: see [`crate::control::guest_events`]). The
/// console, PCI address and CMOS index writes are held by KVM where
/// `held` can (see [`crate::coalesced`]).
pub fn build(
    vm: &VmFd,
    config: &UvmConfig,
    tap: Arc<ConsoleTap>,
    events: &Arc<GuestEvents>,
    held: &Arc<CoalescedWrites>,
) -> Result<Platform, VmmError> {
    let requests: RequestSink = events.request_sink();
    let writer = ConsoleWriter::new(&config.id, &config.console, tap, requests.clone())?;
    let serial = Arc::new(Mutex::new(Serial::with_batching(
        irq_line(vm, COM1_IRQ)?,
        Box::new(writer),
        Arc::new(UartBatching::new(held.clone())),
    )));
    held.set_zone(crate::coalesced::PCI_ADDRESS_ZONE, true);
    held.set_zone(crate::coalesced::CMOS_INDEX_ZONE, true);
    let pm = Arc::new(Mutex::new(PmDevice::new(
        irq_line(vm, u32::from(SCI_IRQ))?,
        requests.clone(),
    )));
    let hotplug = Arc::new(Mutex::new(PciHotplug::new(events.eject_sink())));
    let i8042 = Arc::new(Mutex::new(I8042::new(requests.clone())));
    let cmos = Arc::new(Mutex::new(Cmos::new()));
    let stateful = PlatformDevices {
        devices: BTreeMap::from([
            (
                "com1",
                serial.clone() as Arc<Mutex<dyn Snapshottable + Send>>,
            ),
            ("i8042", i8042.clone() as _),
            ("cmos", cmos.clone() as _),
            ("acpi-pm", pm.clone() as _),
            ("pci-hotplug", hotplug.clone() as _),
        ]),
    };
    let mut io_bus = Bus::new();
    io_bus.insert(serial as SharedDevice, COM1_BASE, UART_PORTS)?;
    io_bus.insert(i8042, I8042_BASE, I8042_PORTS)?;
    io_bus.insert(cmos, CMOS_BASE, CMOS_PORTS)?;
    io_bus.insert(
        Arc::new(Mutex::new(PvPanic::new(requests))),
        PVPANIC_PORT,
        1,
    )?;
    io_bus.insert(pm.clone(), u64::from(PM_BASE), u64::from(PM_LEN))?;
    io_bus.insert(hotplug.clone(), u64::from(PCIHP_BASE), u64::from(PCIHP_LEN))?;
    Ok(Platform {
        io_bus,
        pm,
        hotplug,
        stateful,
    })
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::unbounded_channel;
    use uvm_devices::acpi::pci_hotplug::EJECT_OFFSET;

    use super::*;
    use crate::build::vm;
    use crate::control::protocol::VmmEvent;

    /// The port bus of a small VM, with the receiving end of its events.
    fn platform() -> Option<(Bus, tokio::sync::mpsc::UnboundedReceiver<VmmEvent>)> {
        let (platform, inbox) = whole_platform()?;
        Some((platform.io_bus, inbox))
    }

    /// The platform of a small VM, with the receiving end of its events.
    fn whole_platform() -> Option<(Platform, tokio::sync::mpsc::UnboundedReceiver<VmmEvent>)> {
        if !std::path::Path::new("/dev/kvm").exists() {
            eprintln!("SKIPPED: /dev/kvm not available");
            return None;
        }
        let kvm_vm = vm::create(16 << 20).unwrap();
        let config = UvmConfig::builder("events").build().unwrap();
        let (events, inbox) = unbounded_channel();
        let held = Arc::new(CoalescedWrites::new(
            &kvm_vm.kvm,
            kvm_vm.vm.clone(),
            "events",
        ));
        let platform = build(
            &kvm_vm.vm,
            &config,
            Arc::default(),
            &GuestEvents::new(events),
            &held,
        )
        .unwrap();
        Some((platform, inbox))
    }

    fn read(bus: &Bus, port: u64) -> u8 {
        let mut b = [0u8];
        assert!(bus.read(port, &mut b));
        b[0]
    }

    #[test]
    fn the_platform_devices_state_comes_back_through_the_bus() {
        let Some((a, _inbox_a)) = whole_platform() else {
            return;
        };
        a.io_bus.write(CMOS_BASE, &[0x40]);
        a.io_bus.write(CMOS_BASE + 1, &[0x5a]);
        a.io_bus.write(COM1_BASE + 7, &[0x33]); // UART scratch
        a.io_bus
            .write(u64::from(PM_BASE) + 2, &0x0100u16.to_le_bytes()); // PWRBTN_EN
        a.hotplug.lock().announce_add(5).unwrap();
        let states = a.stateful.save().unwrap();
        assert_eq!(
            states.keys().map(String::as_str).collect::<Vec<_>>(),
            ["acpi-pm", "cmos", "com1", "i8042", "pci-hotplug"]
        );

        let Some((b, _inbox_b)) = whole_platform() else {
            return;
        };
        b.stateful.restore(&states).unwrap();
        b.io_bus.write(CMOS_BASE, &[0x40]);
        assert_eq!(read(&b.io_bus, CMOS_BASE + 1), 0x5a);
        assert_eq!(read(&b.io_bus, COM1_BASE + 7), 0x33);
        assert_eq!(read(&b.io_bus, u64::from(PM_BASE) + 3), 0x01);
        assert_eq!(read(&b.io_bus, u64::from(PCIHP_BASE)), 1 << 5);

        let mut missing = states.clone();
        missing.remove("cmos");
        assert!(matches!(
            b.stateful.restore(&missing),
            Err(StateError::Invalid(_))
        ));
    }

    #[test]
    fn one_eject_write_of_every_slot_queues_at_most_one_event() {
        let Some((bus, inbox)) = platform() else {
            return;
        };
        let eject = u64::from(PCIHP_BASE + EJECT_OFFSET);
        assert!(bus.write(eject, &0xffff_fffeu32.to_le_bytes()));
        assert!(inbox.len() <= 1, "{} events queued", inbox.len());
    }

    #[test]
    fn a_flood_of_guest_writes_keeps_the_queue_bounded() {
        let Some((bus, inbox)) = platform() else {
            return;
        };
        let eject = u64::from(PCIHP_BASE + EJECT_OFFSET);
        for i in 0..10_000u32 {
            bus.write(eject, &(1u32 << (1 + i % 31)).to_le_bytes());
            bus.write(PVPANIC_PORT, &[1]);
            bus.write(I8042_BASE + 4, &[0xfe]);
            bus.write(u64::from(PM_BASE) + 4, &0x3400u16.to_le_bytes());
        }
        assert!(inbox.len() <= 4, "{} events queued", inbox.len());
    }
}
