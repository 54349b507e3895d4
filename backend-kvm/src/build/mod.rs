//! Building a VM, before anything runs: what [`prepare`] does, one file per
//! part, in this order:
//!
//! 1. [`vm`]: `/dev/kvm`, the VM, its RAM, irqchip and PIT;
//! 2. [`platform`]: the port-bus devices (console, reset line, CMOS,
//!    pvpanic, ACPI PM block, PCI hotplug block);
//! 3. [`pci`]: the PCI root bus with the virtio-vsock function, then the
//!    hub goes live and puts every cold-plugged device on the bus;
//! 4. [`acpi`]: the ACPI tables;
//! 5. [`vcpus`]: the vCPUs, then the boot image is loaded into vCPU 0.
//!
//! The result ([`Prepared`]) is handed to [`crate::control::launch()`].

pub mod acpi;
pub mod pci;
pub mod platform;
pub mod vcpus;
pub mod vm;

use std::sync::Arc;

use kvm_ioctls::{VcpuFd, VmFd};
use parking_lot::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use uvm_api::UvmConfig;
use uvm_devices::acpi::pm::PmDevice;
use uvm_devices::bus::Bus;
use uvm_devices::interrupt::MsiSink;
use uvm_devices::ioevent::IoEventRegistry;
use uvm_devices::virtio::worker::PanicHook;
use uvm_devices::virtio::{GuestMemoryHandle, VirtioDevice};

use crate::arch::boot::BootSpec;
use crate::coalesced::CoalescedWrites;
use crate::console::ConsoleTap;
use crate::control::guest_events::GuestEvents;
use crate::control::protocol::VmmEvent;
use crate::error::VmmError;
use crate::exits::ExitCounters;
use crate::ioevents::KvmIoEvents;
use crate::irq::KvmMsiRoutes;
use crate::memory::GuestMem;
use crate::pci::hub::{DeviceHub, LiveBus};
use pci::PciDevices;

/// A VM built and ready to run.
pub struct Prepared {
    /// The VM's id, for logs.
    pub id: String,
    /// The VM.
    pub vm: Arc<VmFd>,
    /// The PCI root bus and its fixed function.
    pub pci: PciDevices,
    /// The vCPUs, boot vCPU first.
    pub vcpus: Vec<VcpuFd>,
    /// Guest RAM.
    pub mem: Arc<GuestMem>,
    /// The port bus.
    pub io_bus: Arc<Bus>,
    /// Port writes KVM holds (its ring is mapped from the boot vCPU).
    pub held: Arc<CoalescedWrites>,
    /// The MMIO bus.
    pub mmio_bus: Arc<Bus>,
    /// The ACPI PM block (power button).
    pub pm: Arc<Mutex<PmDevice>>,
    /// Where devices and vCPUs report.
    pub events: UnboundedSender<VmmEvent>,
    /// What the guest reports, bounded (ejects pending).
    pub guest: Arc<GuestEvents>,
    /// What the control thread reads.
    pub inbox: UnboundedReceiver<VmmEvent>,
}

impl Prepared {
    /// The I/O port bus (for tests that drive devices without vCPUs).
    pub fn io_bus(&self) -> &Arc<Bus> {
        &self.io_bus
    }

    /// The MMIO bus.
    pub fn mmio_bus(&self) -> &Arc<Bus> {
        &self.mmio_bus
    }

    /// Guest memory.
    pub fn memory(&self) -> &Arc<GuestMem> {
        &self.mem
    }

    /// The PCI devices.
    pub fn pci(&self) -> &PciDevices {
        &self.pci
    }
}

/// What a device worker that panicked reports: the run ends with
/// `VmmError` naming the worker (see [`VmmEvent::DeviceFailed`]).
fn worker_panic_hook(events: UnboundedSender<VmmEvent>) -> PanicHook {
    Arc::new(move |reason: &str| {
        // The controller may have ended already; then nothing is left to end.
        let _ = events.send(VmmEvent::DeviceFailed(reason.to_owned()));
    })
}

/// Builds the VM for `config` and loads `boot`; `vsock` becomes the
/// virtio-vsock function of the PCI root bus and `hub`'s planned devices
/// go on the bus. Nothing runs yet.
pub fn prepare(
    config: &UvmConfig,
    boot: &BootSpec,
    tap: Arc<ConsoleTap>,
    vsock: Box<dyn VirtioDevice>,
    hub: &Arc<DeviceHub>,
    counters: &ExitCounters,
) -> Result<Prepared, VmmError> {
    let vcpu_count = u8::try_from(config.vcpus)
        .ok()
        .filter(|n| *n > 0 && *n < u8::MAX)
        .ok_or_else(|| VmmError::Config(format!("{} vCPUs", config.vcpus)))?;
    let mem_bytes = config.memory_mib << 20;
    let vm::KvmVm { kvm, vm, mem } = vm::create(mem_bytes)?;
    crate::huge_pages::advise(&mem, &config.id);
    let (events, inbox) = unbounded_channel();
    let guest = GuestEvents::new(events.clone());
    let held = Arc::new(CoalescedWrites::new(&kvm, vm.clone(), &config.id));
    // The stateful devices' handles wait for save and restore to use them.
    let platform::Platform {
        mut io_bus,
        pm,
        hotplug,
        stateful: _,
    } = platform::build(&vm, config, tap, &guest, &held)?;
    let mut mmio_bus = Bus::new();
    let msi: Arc<dyn MsiSink> =
        Arc::new(KvmMsiRoutes::new(&vm).counting_in(counters.interrupt_count()));
    let ioevents: Arc<dyn IoEventRegistry> = Arc::new(KvmIoEvents::new(&vm));
    let on_panic = worker_panic_hook(events.clone());
    let pci = pci::wire(
        msi.clone(),
        pci::WorkerWiring {
            ioevents: ioevents.clone(),
            on_panic: on_panic.clone(),
            kick_count: counters.kick_count(),
        },
        &mem,
        vsock,
        &mut io_bus,
        &mut mmio_bus,
    )?;
    hub.attach(LiveBus {
        vm: vm.clone(),
        root: pci.root.clone(),
        hotplug,
        pm: pm.clone(),
        mem: GuestMemoryHandle::new((*mem).clone()),
        msi,
        ioevents,
        on_panic: Some(on_panic),
        kick_count: counters.kick_count(),
    })
    .map_err(|e| VmmError::Device(e.to_string()))?;
    let rsdp = acpi::write(&mem, vcpu_count)?;
    let vcpus = vcpus::create(&kvm, &vm, vcpu_count, &config.id)?;
    let boot_vcpu = vcpus
        .first()
        .ok_or_else(|| VmmError::Config("no vCPU".into()))?;
    boot.load(&mem, mem_bytes, rsdp, boot_vcpu)?;
    held.map_ring(std::os::fd::AsRawFd::as_raw_fd(boot_vcpu));
    Ok(Prepared {
        id: config.id.clone(),
        vm,
        pci,
        vcpus,
        mem,
        io_bus: Arc::new(io_bus),
        held,
        mmio_bus: Arc::new(mmio_bus),
        pm,
        events,
        guest,
        inbox,
    })
}
