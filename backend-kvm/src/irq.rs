//! Every KVM interrupt adapter of the VMM: legacy lines as irqfds
//! ([`irq_line`]: the 8250's IRQ 4, the ACPI SCI) and MSI-X messages of PCI
//! functions, as irqfds on MSI routes ([`KvmMsiRoutes`]) with
//! `KVM_SIGNAL_MSI` ([`KvmMsi`]) as the fallback. The device models see them
//! only as `uvm_devices::interrupt` traits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use kvm_bindings::{
    KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KvmIrqRouting, kvm_irq_routing_entry, kvm_msi,
};
use kvm_ioctls::VmFd;
use parking_lot::Mutex;
use uvm_devices::interrupt::{IrqLine, MsiSink};
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;

/// An [`IrqLine`] backed by an irqfd.
struct IrqFd(EventFd);

impl IrqLine for IrqFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// A legacy interrupt line for `gsi` of `vm`, backed by an irqfd.
pub fn irq_line(vm: &VmFd, gsi: u32) -> Result<Arc<dyn IrqLine>, VmmError> {
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io("eventfd"))?;
    vm.register_irqfd(&fd, gsi)
        .map_err(VmmError::kvm("KVM_IRQFD"))?;
    Ok(Arc::new(IrqFd(fd)))
}

/// An [`MsiSink`] that delivers messages with `KVM_SIGNAL_MSI`.
///
/// It holds the VM weakly: once the VM is gone, delivery fails with an
/// error (logged by the transport) instead of keeping the VM alive.
pub struct KvmMsi {
    vm: Weak<VmFd>,
}

impl KvmMsi {
    /// A sink delivering to `vm`.
    pub fn new(vm: &Arc<VmFd>) -> Self {
        KvmMsi {
            vm: Arc::downgrade(vm),
        }
    }
}

/// The `kvm_msi` for a message with this address and data.
pub fn msi_message(address: u64, data: u32) -> kvm_msi {
    kvm_msi {
        address_lo: address as u32,
        address_hi: (address >> 32) as u32,
        data,
        ..Default::default()
    }
}

impl MsiSink for KvmMsi {
    fn signal(&self, address: u64, data: u32) -> std::io::Result<()> {
        let vm = self
            .vm
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the VM is gone"))?;
        match vm.signal_msi(msi_message(address, data)) {
            // 0: the guest has the interrupt blocked (masked at the APIC);
            // KVM dropped it, as real hardware would.
            Ok(_) => Ok(()),
            Err(e) => Err(std::io::Error::from_raw_os_error(e.errno())),
        }
    }
}

/// The first GSI given to an MSI route (0..=23 are the IOAPIC's pins).
const FIRST_MSI_GSI: u32 = 24;
/// Most MSI routes kept at once; a guest that programs more distinct
/// messages than this (each vector of each function once, then again after
/// each reprogramming) gets the table cleared and rebuilt as it signals.
pub const MAX_MSI_ROUTES: usize = 512;

/// The routes KVM sets up with the in-kernel irqchip, which a
/// `KVM_SET_GSI_ROUTING` call replaces and so must repeat: GSIs 0..=15 on
/// both the PIC and the IOAPIC, 16..=23 on the IOAPIC.
fn default_routes() -> Vec<kvm_irq_routing_entry> {
    let irqchip = |gsi: u32, chip: u32, pin: u32| {
        let mut entry = kvm_irq_routing_entry {
            gsi,
            type_: KVM_IRQ_ROUTING_IRQCHIP,
            ..Default::default()
        };
        entry.u.irqchip.irqchip = chip;
        entry.u.irqchip.pin = pin;
        entry
    };
    let mut routes = Vec::with_capacity(40);
    for gsi in 0..24u32 {
        if gsi < 16 {
            let chip = if gsi < 8 {
                KVM_IRQCHIP_PIC_MASTER
            } else {
                KVM_IRQCHIP_PIC_SLAVE
            };
            routes.push(irqchip(gsi, chip, gsi % 8));
        }
        routes.push(irqchip(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    routes
}

/// The routing entry of an MSI route.
fn msi_route(gsi: u32, address: u64, data: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = address as u32;
    entry.u.msi.address_hi = (address >> 32) as u32;
    entry.u.msi.data = data;
    entry
}

/// One message's route: its GSI and the irqfd KVM injects it on.
struct MsiRoute {
    gsi: u32,
    fd: EventFd,
}

#[derive(Default)]
struct RouteTable {
    by_message: HashMap<(u64, u32), MsiRoute>,
    next_gsi: u32,
    /// Routing was refused once: every message goes through the fallback.
    broken: bool,
}

/// An [`MsiSink`] that delivers each message through an irqfd on an MSI
/// route. The routes follow what the devices send: the first time a
/// message (address and data, as the guest programmed the MSI-X entry) is
/// signalled it gets a GSI, a route in the VM's table
/// (`KVM_SET_GSI_ROUTING`) and an irqfd; from then on a signal is one
/// eventfd write, which KVM turns into the interrupt. A guest that
/// reprograms an entry simply gets a new route for the new message. If KVM
/// refuses the routing, messages go out with `KVM_SIGNAL_MSI`.
pub struct KvmMsiRoutes {
    vm: Weak<VmFd>,
    fallback: KvmMsi,
    table: Mutex<RouteTable>,
    /// Messages signalled, delivered or not.
    signalled: Arc<AtomicU64>,
}

impl KvmMsiRoutes {
    /// A sink delivering to `vm`.
    pub fn new(vm: &Arc<VmFd>) -> Self {
        KvmMsiRoutes {
            vm: Arc::downgrade(vm),
            fallback: KvmMsi::new(vm),
            table: Mutex::new(RouteTable {
                next_gsi: FIRST_MSI_GSI,
                ..Default::default()
            }),
            signalled: Arc::default(),
        }
    }

    /// Counts every message signalled in `count` (by default the sink
    /// keeps its own count).
    pub fn counting_in(mut self, count: Arc<AtomicU64>) -> Self {
        self.signalled = count;
        self
    }

    /// How many MSI routes exist now.
    pub fn routes(&self) -> usize {
        self.table.lock().by_message.len()
    }

    /// Adds the route of `message` to `table`, clearing the table first
    /// when it is full.
    fn add_route(
        &self,
        table: &mut RouteTable,
        vm: &VmFd,
        message: (u64, u32),
    ) -> Result<(), String> {
        if table.by_message.len() >= MAX_MSI_ROUTES {
            tracing::debug!(
                routes = table.by_message.len(),
                "MSI route table full; rebuilt"
            );
            for (_, route) in table.by_message.drain() {
                let _ = vm.unregister_irqfd(&route.fd, route.gsi);
            }
            table.next_gsi = FIRST_MSI_GSI;
        }
        let gsi = table.next_gsi;
        let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        let mut entries = default_routes();
        entries.extend(
            table
                .by_message
                .iter()
                .map(|((address, data), route)| msi_route(route.gsi, *address, *data)),
        );
        entries.push(msi_route(gsi, message.0, message.1));
        let mut routing =
            KvmIrqRouting::new(entries.len()).map_err(|e| format!("routing table: {e:?}"))?;
        routing.as_mut_slice().copy_from_slice(&entries);
        vm.set_gsi_routing(&routing)
            .map_err(|e| format!("KVM_SET_GSI_ROUTING: {e}"))?;
        vm.register_irqfd(&fd, gsi)
            .map_err(|e| format!("KVM_IRQFD: {e}"))?;
        table.next_gsi += 1;
        table.by_message.insert(message, MsiRoute { gsi, fd });
        Ok(())
    }
}

impl MsiSink for KvmMsiRoutes {
    fn signal(&self, address: u64, data: u32) -> std::io::Result<()> {
        self.signalled.fetch_add(1, Ordering::Relaxed);
        let mut table = self.table.lock();
        if table.broken {
            drop(table);
            return self.fallback.signal(address, data);
        }
        if let Some(route) = table.by_message.get(&(address, data)) {
            return route.fd.write(1);
        }
        let vm = self
            .vm
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the VM is gone"))?;
        if let Err(error) = self.add_route(&mut table, &vm, (address, data)) {
            tracing::warn!(%error, "MSI routes refused; messages go out with KVM_SIGNAL_MSI");
            table.broken = true;
            drop(table);
            return self.fallback.signal(address, data);
        }
        match table.by_message.get(&(address, data)) {
            Some(route) => route.fd.write(1),
            None => Err(std::io::Error::other("MSI route vanished")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_repeat_what_kvm_sets_up() {
        let routes = default_routes();
        assert_eq!(routes.len(), 16 + 24);
        let pins: Vec<(u32, u32, u32)> = routes
            .iter()
            .map(|r| {
                // SAFETY: every entry was built as an irqchip route, so the
                // union holds `irqchip`.
                let chip = unsafe { r.u.irqchip };
                (r.gsi, chip.irqchip, chip.pin)
            })
            .collect();
        assert!(pins.contains(&(4, KVM_IRQCHIP_IOAPIC, 4)));
        assert!(pins.contains(&(9, KVM_IRQCHIP_PIC_SLAVE, 1)));
        assert!(pins.contains(&(23, KVM_IRQCHIP_IOAPIC, 23)));
        assert!(
            !pins
                .iter()
                .any(|(gsi, chip, _)| *gsi >= 16 && *chip != KVM_IRQCHIP_IOAPIC)
        );
    }

    #[test]
    fn msi_routes_to_a_gone_vm_are_an_error() {
        let sink = KvmMsiRoutes {
            vm: Weak::new(),
            fallback: KvmMsi { vm: Weak::new() },
            table: Mutex::new(RouteTable::default()),
            signalled: Arc::default(),
        };
        assert!(sink.signal(0xfee0_0000, 0x30).is_err());
        assert_eq!(
            sink.signalled.load(Ordering::Relaxed),
            1,
            "counted all the same"
        );
    }

    #[test]
    fn msi_message_splits_the_address() {
        let m = msi_message(0x1_fee0_1000, 0x4021);
        assert_eq!(m.address_lo, 0xfee0_1000);
        assert_eq!(m.address_hi, 1);
        assert_eq!(m.data, 0x4021);
        assert_eq!(m.flags, 0);
    }

    #[test]
    fn msi_to_a_gone_vm_is_an_error() {
        let sink = KvmMsi { vm: Weak::new() };
        assert!(sink.signal(0xfee0_0000, 0x30).is_err());
    }

    #[test]
    fn each_message_gets_one_route_and_an_irqfd() {
        if !std::path::Path::new("/dev/kvm").exists() {
            eprintln!("SKIPPED: /dev/kvm not available on this host");
            return;
        }
        let vm = crate::build::vm::create(16 << 20).unwrap();
        let sink = KvmMsiRoutes::new(&vm.vm);
        sink.signal(0xfee0_0000, 0x41).unwrap();
        sink.signal(0xfee0_0000, 0x41).unwrap();
        assert_eq!(sink.routes(), 1, "a second signal made a second route");
        assert!(!sink.table.lock().broken, "KVM refused the MSI route");
        sink.signal(0xfee0_1000, 0x42).unwrap();
        assert_eq!(sink.routes(), 2);
        for i in 0..(MAX_MSI_ROUTES as u32 + 3) {
            sink.signal(0xfee0_0000, 0x1000 + i).unwrap();
        }
        assert!(
            sink.routes() <= MAX_MSI_ROUTES,
            "the route table grew past its cap"
        );
        assert!(!sink.table.lock().broken);
    }
}
