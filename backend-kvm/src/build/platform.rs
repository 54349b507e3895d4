//! The PC platform devices on the port bus: COM1 `0x3f8` (IRQ 4) with the
//! console behind it, the i8042 reset line `0x60`-`0x64`, CMOS `0x70`,
//! pvpanic `0x505`, the ACPI PM block `0x600` (SCI on IRQ 9) and the PCI
//! hotplug register block `0xae00`. Guest requests (power-off, reset,
//! panic) and ejects leave them through [`GuestEvents`] (bounded). KVM's
//! in-kernel PIC/IOAPIC/LAPIC and PIT handle the rest of the platform.

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
    let serial: SharedDevice = Arc::new(Mutex::new(Serial::with_batching(
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
    let mut io_bus = Bus::new();
    io_bus.insert(serial, COM1_BASE, UART_PORTS)?;
    io_bus.insert(
        Arc::new(Mutex::new(I8042::new(requests.clone()))),
        I8042_BASE,
        I8042_PORTS,
    )?;
    io_bus.insert(Arc::new(Mutex::new(Cmos::new())), CMOS_BASE, CMOS_PORTS)?;
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
        Some((platform.io_bus, inbox))
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
