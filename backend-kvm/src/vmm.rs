//! The in-process VMM: builds a VM (memory, irqchip, PIT, devices, vCPUs,
//! boot image) and runs its control thread.
//!
//! The async API ([`crate::uvm::KvmUvm`]) talks to the control thread
//! through a tokio channel of [`VmmEvent`]s; devices and vCPU threads report
//! on the same channel, so the control thread sees every event in one order
//! and the first event that ends the run decides the exit reason.
//!
//! Port map: COM1 `0x3f8` (IRQ 4), i8042 `0x60`-`0x64` (reset line), CMOS
//! `0x70`, pvpanic `0x505`, ACPI PM block `0x600` (SCI on IRQ 9), PCI
//! hotplug register block `0xae00` ([`crate::hotplug`]), PCI
//! configuration mechanism #1 `0xcf8` ([`crate::pci`]; the BAR window is on
//! the MMIO bus). KVM's
//! in-kernel PIC/IOAPIC/LAPIC and PIT ([`crate::pit`]: dummy speaker port
//! `0x61`, lost ticks discarded) handle the rest of the PC platform.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_clock_data};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use parking_lot::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
use uvm_api::{ExitStatus, StopReason, UvmConfig};
use uvm_devices::acpi::pci_hotplug::{EjectSink, PCIHP_BASE, PCIHP_LEN, PciHotplug, hotplug_aml};
use uvm_devices::acpi::pm::{PM_BASE, PM_LEN, PmDevice, SCI_IRQ};
use uvm_devices::acpi::tables::{self, AcpiConfig};
use uvm_devices::bus::{Bus, SharedDevice};
use uvm_devices::interrupt::{IrqLine, MsiSink};
use uvm_devices::legacy::cmos::{CMOS_BASE, CMOS_PORTS, Cmos};
use uvm_devices::legacy::i8042::{I8042, I8042_BASE, I8042_PORTS};
use uvm_devices::legacy::pvpanic::{PVPANIC_PORT, PvPanic};
use uvm_devices::legacy::serial::{COM1_BASE, COM1_IRQ, Serial, UART_PORTS};
use uvm_devices::legacy::{GuestRequest, RequestSink};
use uvm_devices::quiesce::Pausable;
use uvm_devices::virtio::{GuestMemoryHandle, VirtioDevice};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use crate::boot::linux::LinuxBoot;
use crate::boot::payload::RealModePayload;
use crate::console::{ConsoleTap, ConsoleWriter};
use crate::error::VmmError;
use crate::exits::ExitCounters;
use crate::hotplug::{DeviceHub, HOTPLUG_SLOTS, LiveBus};
use crate::lifecycle::Lifecycle;
use crate::memory::{self, GuestMem};
use crate::pci::{self, KvmMsi, PciDevices};
use crate::vcpu::{self, RunControl, VcpuClock, VcpuContext, Want};
use crate::{cpuid, layout, msrs, pit, regs};

/// What the boot vCPU runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSpec {
    /// A Linux kernel, booted directly.
    Linux(LinuxBoot),
    /// A real-mode test payload.
    Payload(RealModePayload),
}

/// A request of the async API to the control thread.
#[derive(Debug)]
pub enum Command {
    /// Park every vCPU and save the guest clock.
    Pause(oneshot::Sender<Result<(), String>>),
    /// Restore the guest clock and run again.
    Resume(oneshot::Sender<Result<(), String>>),
    /// Raise the ACPI power-button event; answers whether the guest enabled it.
    PowerButton(oneshot::Sender<bool>),
    /// Stop with this status; answered once every vCPU thread has ended.
    Stop(ExitStatus, oneshot::Sender<()>),
    /// Make the boot vCPU triple-fault (for `GuestProbe::trigger(Crash)`):
    /// answers whether the request reached a running vCPU.
    InjectCrash(oneshot::Sender<bool>),
}

/// Everything the control thread hears about.
#[derive(Debug)]
pub enum VmmEvent {
    /// A device reported a guest request.
    Guest(GuestRequest),
    /// A vCPU thread ended; `status` is set if the guest ended the run.
    VcpuEnded {
        /// Which vCPU.
        index: u8,
        /// Why, if the vCPU itself ended the run.
        status: Option<ExitStatus>,
    },
    /// A request of the async API.
    Command(Command),
    /// The guest ejected the device in this PCI slot.
    Ejected(u8),
}

/// Figures the stats call reads while the VM runs (and frozen after).
#[derive(Debug, Default)]
pub struct VmStats {
    /// Exit counters.
    pub counters: Arc<ExitCounters>,
    /// One clock per vCPU thread.
    pub clocks: Mutex<Vec<Arc<VcpuClock>>>,
    /// Guest memory while the VM exists.
    pub mem: Mutex<Option<Arc<GuestMem>>>,
    /// Resident bytes measured at the stop.
    pub final_resident: Mutex<Option<u64>>,
    /// How many times the guest clock was saved at pause and restored at resume.
    pub clock_restores: AtomicU64,
}

/// An [`IrqLine`] backed by an irqfd.
struct IrqFd(EventFd);

impl IrqLine for IrqFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

fn irq_line(vm: &VmFd, gsi: u32) -> Result<Arc<dyn IrqLine>, VmmError> {
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io("eventfd"))?;
    vm.register_irqfd(&fd, gsi)
        .map_err(VmmError::kvm("KVM_IRQFD"))?;
    Ok(Arc::new(IrqFd(fd)))
}

/// A VM built and ready to run.
pub struct Prepared {
    id: String,
    vm: Arc<VmFd>,
    pci: PciDevices,
    vcpus: Vec<VcpuFd>,
    mem: Arc<GuestMem>,
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    pm: Arc<Mutex<PmDevice>>,
    tx: UnboundedSender<VmmEvent>,
    rx: UnboundedReceiver<VmmEvent>,
}

fn open_kvm() -> Result<Kvm, VmmError> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err(VmmError::Config("/dev/kvm does not exist".into()));
    }
    Kvm::new().map_err(VmmError::kvm("open /dev/kvm"))
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

/// Builds the VM for `config` and loads `boot`; `vsock` becomes the
/// virtio-vsock function of the PCI root bus. Nothing runs yet.
pub fn prepare(
    config: &UvmConfig,
    boot: &BootSpec,
    tap: Arc<ConsoleTap>,
    vsock: Box<dyn VirtioDevice>,
    hub: &Arc<DeviceHub>,
) -> Result<Prepared, VmmError> {
    let vcpu_count = u8::try_from(config.vcpus)
        .ok()
        .filter(|n| *n > 0 && *n < u8::MAX)
        .ok_or_else(|| VmmError::Config(format!("{} vCPUs", config.vcpus)))?;
    let mem_bytes = config.memory_mib << 20;
    let kvm = open_kvm()?;
    let vm = Arc::new(kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?);
    let mem = Arc::new(memory::create(mem_bytes)?);
    memory::register(&vm, &mem)?;
    vm.set_tss_address(layout::KVM_TSS_ADDR)
        .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
    pit::create(&vm)?;

    let (tx, rx) = unbounded_channel();
    let requests: RequestSink = {
        let tx = tx.clone();
        Arc::new(move |r| {
            let _ = tx.send(VmmEvent::Guest(r));
        })
    };

    // Devices.
    let writer = ConsoleWriter::new(&config.id, &config.console, tap, requests.clone())?;
    let serial: SharedDevice = Arc::new(Mutex::new(Serial::new(
        irq_line(&vm, COM1_IRQ)?,
        Box::new(writer),
    )));
    let pm = Arc::new(Mutex::new(PmDevice::new(
        irq_line(&vm, u32::from(SCI_IRQ))?,
        requests.clone(),
    )));
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
    let hotplug = {
        let tx = tx.clone();
        let ejected: EjectSink = Arc::new(move |slot| {
            let _ = tx.send(VmmEvent::Ejected(slot));
        });
        Arc::new(Mutex::new(PciHotplug::new(ejected)))
    };
    io_bus.insert(hotplug.clone(), u64::from(PCIHP_BASE), u64::from(PCIHP_LEN))?;
    let mut mmio_bus = Bus::new();
    let msi: Arc<dyn MsiSink> = Arc::new(KvmMsi::new(&vm));
    let pci = pci::wire(msi.clone(), &mem, vsock, &mut io_bus, &mut mmio_bus)?;
    hub.attach(LiveBus {
        vm: vm.clone(),
        root: pci.root.clone(),
        hotplug,
        pm: pm.clone(),
        mem: GuestMemoryHandle::new((*mem).clone()),
        msi,
    })
    .map_err(|e| VmmError::Device(e.to_string()))?;

    // ACPI.
    let mut acpi = AcpiConfig::new(vcpu_count, layout::PCI_MMIO32);
    acpi.pvpanic_port = Some(PVPANIC_PORT as u16);
    let slots: Vec<u8> = HOTPLUG_SLOTS.collect();
    (acpi.root_bridge_aml, acpi.top_level_aml) = hotplug_aml(&slots);
    let image = tables::build(&acpi, layout::ACPI_ADDR, layout::ACPI_MAX)?;
    mem.write_slice(&image.bytes, GuestAddress(image.base))
        .map_err(|e| VmmError::Memory(e.to_string()))?;

    // vCPUs.
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    let mut vcpus = Vec::with_capacity(usize::from(vcpu_count));
    for id in 0..vcpu_count {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        vcpu.set_cpuid2(&cpuid::for_vcpu(&supported, id, vcpu_count, tsc_deadline))
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        let (set, wanted) = msrs::set_boot_msrs(&vcpu)?;
        if set != wanted {
            tracing::warn!(vm = %config.id, vcpu = id, "KVM accepted {set} of {wanted} boot MSRs");
        }
        regs::set_fpu(&vcpu)?;
        regs::set_lint(&vcpu)?;
        vcpus.push(vcpu);
    }
    let boot_vcpu = vcpus
        .first()
        .ok_or_else(|| VmmError::Config("no vCPU".into()))?;
    match boot {
        BootSpec::Linux(linux) => {
            let entry = linux.load(&mem, mem_bytes, image.rsdp)?;
            regs::write_long_mode_tables(&mem)?;
            regs::set_long_mode(boot_vcpu, entry)?;
        }
        BootSpec::Payload(payload) => payload.load(&mem, boot_vcpu)?,
    }
    Ok(Prepared {
        id: config.id.clone(),
        vm,
        pci,
        vcpus,
        mem,
        io_bus: Arc::new(io_bus),
        mmio_bus: Arc::new(mmio_bus),
        pm,
        tx,
        rx,
    })
}

/// The handle the async API keeps: the command channel.
#[derive(Debug, Clone)]
pub struct VmmHandle {
    tx: UnboundedSender<VmmEvent>,
}

impl VmmHandle {
    /// Sends a command; `Gone` if the control thread has ended.
    pub fn send(&self, command: Command) -> Result<(), VmmError> {
        self.tx
            .send(VmmEvent::Command(command))
            .map_err(|_| VmmError::Gone)
    }
}

/// Starts the vCPU threads and the control thread.
/// `on_stop` runs on the control thread once every vCPU thread has ended.
pub fn launch(
    prepared: Prepared,
    hub: Arc<DeviceHub>,
    lifecycle: Arc<Lifecycle>,
    stats: Arc<VmStats>,
    on_stop: Box<dyn FnOnce() + Send>,
) -> Result<VmmHandle, VmmError> {
    vcpu::install_kick_handler().map_err(VmmError::io("install the vCPU kick signal handler"))?;
    let Prepared {
        id,
        vm,
        pci,
        vcpus,
        mem,
        io_bus,
        mmio_bus,
        pm,
        tx,
        rx,
    } = prepared;
    *stats.mem.lock() = Some(mem.clone());
    let control = Arc::new(RunControl::default());
    let mut threads = Vec::new();
    let mut clocks = Vec::new();
    let mut controller = Controller {
        id: id.clone(),
        vm,
        pci: Some(pci),
        hub,
        on_stop: Some(on_stop),
        _mem: mem,
        pm,
        control: control.clone(),
        threads: Vec::new(),
        rx,
        lifecycle,
        stats: stats.clone(),
        saved_clock: None,
    };
    for (index, vcpu) in vcpus.into_iter().enumerate() {
        let clock = Arc::new(VcpuClock::default());
        clocks.push(clock.clone());
        let ctx = VcpuContext {
            index: index as u8,
            vm_id: id.clone(),
            io_bus: io_bus.clone(),
            mmio_bus: mmio_bus.clone(),
            control: control.clone(),
            counters: stats.counters.clone(),
            clock,
            events: tx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || vcpu::run(vcpu, ctx));
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                controller.threads = threads;
                controller.finish(ExitStatus::with_detail(
                    StopReason::StartFailed,
                    format!("spawning vCPU thread {index}: {e}"),
                ));
                return Err(VmmError::io("spawn a vCPU thread")(e));
            }
        }
    }
    *stats.clocks.lock() = clocks;
    controller.threads = threads;
    std::thread::Builder::new()
        .name(format!("vmm-{id}"))
        .spawn(move || controller.run())
        .map_err(VmmError::io("spawn the VMM control thread"))?;
    Ok(VmmHandle { tx })
}

struct Controller {
    id: String,
    vm: Arc<VmFd>,
    // The devices live until the VM has stopped (dropped in `finish`).
    pci: Option<PciDevices>,
    hub: Arc<DeviceHub>,
    on_stop: Option<Box<dyn FnOnce() + Send>>,
    // Guest memory must outlive every vCPU thread (joined in `finish`).
    _mem: Arc<GuestMem>,
    pm: Arc<Mutex<PmDevice>>,
    control: Arc<RunControl>,
    threads: Vec<JoinHandle<()>>,
    rx: UnboundedReceiver<VmmEvent>,
    lifecycle: Arc<Lifecycle>,
    stats: Arc<VmStats>,
    saved_clock: Option<kvm_clock_data>,
}

const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
const KICK_INTERVAL: Duration = Duration::from_millis(20);

impl Controller {
    fn run(mut self) {
        while let Some(event) = self.rx.blocking_recv() {
            let status = match event {
                VmmEvent::Guest(GuestRequest::PowerOff) => {
                    ExitStatus::with_detail(StopReason::Shutdown, "ACPI S5")
                }
                VmmEvent::Guest(GuestRequest::Reset) => {
                    ExitStatus::with_detail(StopReason::Reboot, "reset requested")
                }
                VmmEvent::Guest(GuestRequest::Panic) => {
                    ExitStatus::with_detail(StopReason::GuestPanic, "the guest kernel panicked")
                }
                VmmEvent::VcpuEnded {
                    status: Some(status),
                    ..
                } => status,
                VmmEvent::VcpuEnded {
                    index,
                    status: None,
                } => {
                    tracing::debug!(vm = %self.id, vcpu = index, "vCPU thread ended");
                    continue;
                }
                VmmEvent::Ejected(slot) => {
                    self.hub.on_eject(slot);
                    continue;
                }
                VmmEvent::Command(Command::Pause(reply)) => {
                    let _ = reply.send(self.pause());
                    continue;
                }
                VmmEvent::Command(Command::Resume(reply)) => {
                    let _ = reply.send(self.resume());
                    continue;
                }
                VmmEvent::Command(Command::PowerButton(reply)) => {
                    let enabled = lock_pm(&self.pm).press_power_button();
                    tracing::info!(vm = %self.id, "power button pressed (guest listening: {enabled})");
                    let _ = reply.send(enabled);
                    continue;
                }
                VmmEvent::Command(Command::InjectCrash(reply)) => {
                    let running = self.threads.first().is_some_and(|t| !t.is_finished());
                    if running {
                        tracing::warn!(vm = %self.id, "injecting a triple fault into vCPU 0");
                        self.control.request_crash();
                        self.kick_all();
                    }
                    let _ = reply.send(running);
                    continue;
                }
                VmmEvent::Command(Command::Stop(status, reply)) => {
                    self.finish(status);
                    let _ = reply.send(());
                    return;
                }
            };
            self.finish(status);
            return;
        }
    }

    fn kick_all(&self) {
        for t in &self.threads {
            if !t.is_finished()
                && let Err(e) = t.kill(vcpu::kick_signal())
            {
                tracing::debug!(vm = %self.id, "kick failed: {e}");
            }
        }
    }

    fn pause(&mut self) -> Result<(), String> {
        self.control.set(Want::Pause);
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            self.kick_all();
            if self.control.wait_parked(self.threads.len(), KICK_INTERVAL) {
                break;
            }
            if Instant::now() >= deadline {
                self.control.set(Want::Run);
                return Err(format!("the vCPUs did not park within {PAUSE_TIMEOUT:?}"));
            }
        }
        // The devices stop too: no queue is processed and no guest memory
        // written until resume.
        if let Some(pci) = self.pci.as_ref()
            && let Err(e) = pci.root.lock().pause()
        {
            self.control.set(Want::Run);
            return Err(format!("a device did not pause: {e}"));
        }
        match self.vm.get_clock() {
            Ok(clock) => self.saved_clock = Some(clock),
            Err(e) => {
                tracing::warn!(vm = %self.id, "KVM_GET_CLOCK at pause failed: {e}; guest time may jump at resume");
                self.saved_clock = None;
            }
        }
        tracing::info!(vm = %self.id, "paused");
        Ok(())
    }

    fn resume(&mut self) -> Result<(), String> {
        if let Some(mut clock) = self.saved_clock.take() {
            // Flags such as KVM_CLOCK_REALTIME would make KVM add the time
            // spent paused; set the saved value as is.
            clock.flags = 0;
            match self.vm.set_clock(&clock) {
                Ok(()) => {
                    self.stats.clock_restores.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(vm = %self.id, "KVM_SET_CLOCK at resume failed: {e}; guest time jumps");
                }
            }
        }
        if let Some(pci) = self.pci.as_ref()
            && let Err(e) = pci.root.lock().resume()
        {
            tracing::error!(vm = %self.id, "a device did not resume: {e}");
        }
        self.control.set(Want::Run);
        tracing::info!(vm = %self.id, "resumed");
        Ok(())
    }

    fn finish(&mut self, status: ExitStatus) {
        tracing::info!(vm = %self.id, "stopping: {status}");
        self.control.set(Want::Stop);
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            self.kick_all();
            std::thread::sleep(Duration::from_millis(1));
        }
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::error!(vm = %self.id, "a vCPU thread did not stop; leaving it behind");
            }
        }
        // Pending removals complete: the devices are gone with the VM.
        self.hub.shut_down();
        if let Some(on_stop) = self.on_stop.take() {
            on_stop();
        }
        // The devices (and the host files, taps and threads they hold) go
        // before anyone hears that the VM stopped.
        drop(self.pci.take());
        let resident = self
            .stats
            .mem
            .lock()
            .take()
            .and_then(|m| memory::resident_bytes(&m));
        *self.stats.final_resident.lock() = resident;
        self.lifecycle.finish(status);
        // Drain what is left so that no sender blocks on a full queue (the
        // channel is unbounded; this only answers pending commands).
        self.rx.close();
        while let Ok(event) = self.rx.try_recv() {
            match event {
                VmmEvent::Command(Command::Stop(_, reply)) => {
                    let _ = reply.send(());
                }
                VmmEvent::Command(Command::InjectCrash(reply)) => {
                    let _ = reply.send(false);
                }
                _ => {}
            }
        }
    }
}

fn lock_pm(pm: &Arc<Mutex<PmDevice>>) -> parking_lot::MutexGuard<'_, PmDevice> {
    pm.lock()
}
