//! # uvm-backend-kvm: the `"kvm"` backend
//!
//! An in-process virtual machine monitor on `kvm-ioctls`: each vCPU runs
//! `KVM_RUN` on its own OS thread, port and MMIO exits go through the
//! device buses of `uvm-devices`, and the async [`uvm_api::Uvm`] API talks
//! to a control thread through a channel.
//!
//! ## Layout, one concern per module
//!
//! | module | its job |
//! |--------|---------|
//! | [`backend`] | [`KvmBackend`]: creating VMs, availability on this host |
//! | [`capabilities`] | what the backend claims; `supported` answers from here |
//! | [`uvm`] | [`KvmUvm`]: the `Uvm` facade (one operation at a time) over the VM's inner state |
//! | [`managers`] | the capability managers (SCSI, VPMem, network, shared folders, vsock), one lock order, one removal path |
//! | [`pci`] | the slot map, the hub that plugs functions cold and hot, device memory slots |
//! | [`build`] | building a VM before it runs: KVM VM, platform devices, PCI root, ACPI, vCPUs |
//! | [`control`] | running it: the command and event protocol, the control thread, the one teardown |
//! | [`vcpu`] | vCPU threads: the run loop, parking and kicking, CPU clocks |
//! | [`arch`] | x86-64: memory layout, CPUID, MSRs, registers, PIT, Linux and real-mode boot |
//! | [`irq`] | every KVM interrupt adapter (irqfd lines, MSI) |
//! | [`ioevents`] | queue kicks as `KVM_IOEVENTFD`s, for the device workers |
//! | [`coalesced`] | port writes KVM holds instead of exiting (console bytes, PCI address, CMOS index), handed over in order |
//! | [`memory`], [`huge_pages`], [`device_window`] | guest RAM, its transparent huge pages; guest-physical ranges for device memory |
//! | [`console`], [`exits`], [`stats`], [`guest_probe`], [`error`] | console sink and tap, exit counters, `Stats`, the guest agent as `GuestProbe`, `VmmError` |
//!
//! Contract logic shared with every backend comes from `uvm-api`: the
//! lifecycle table (`State::check`), the exit cell (`ExitCell`: the first
//! exit wins) and the two-phase device table (`DeviceTable`).
//!
//! ## What works
//!
//! - Linux direct boot (bzImage via linux-loader, 64-bit boot protocol) or
//!   a real-mode test payload ([`KvmBackend::create_with_payload`]); ACPI
//!   with fixed hardware (FADT/PM1a/GPE0, SCI on IRQ 9, MADT, a DSDT with
//!   `_S5`, a `PNP0A03` root bridge and its hot-pluggable slots).
//! - Lifecycle: start, stop (graceful through the ACPI power button with a
//!   timeout, then force), pause/resume (vCPUs parked, every device
//!   quiesced, the guest clock kept with `KVM_GET_CLOCK`/`KVM_SET_CLOCK`),
//!   wait with any number of waiters.
//! - Exit reasons: S5 = Shutdown; i8042 `0xfe` or the FADT reset register =
//!   Reboot; triple fault, internal error, failed entry = Crash; pvpanic or
//!   the kernel's panic line on the console = GuestPanic; failures before
//!   the guest runs = StartFailed with the cause.
//! - Stats: per-vCPU thread CPU time, resident guest memory and how much
//!   of it is on huge pages (`memory.huge_page_bytes`), uptime, exit
//!   counters (`exits.*`), writes held instead of exiting
//!   (`coalesced.writes`), console bytes, clock restores.
//! - Devices, all virtio-pci functions on one root bus, cold-plugged before
//!   start and hot-plugged while running through ACPI PCI hotplug (GPE 1,
//!   the guest's acpiphp), removed in two phases on the guest's eject:
//!   SCSI (virtio-scsi controllers, LUNs added and removed through the
//!   event queue), VPMem (virtio-pmem, images mapped above guest RAM),
//!   network (virtio-net on taps), shared folders (virtio-fs, one
//!   `virtiofsd` per share, when a `virtiofsd` binary is found), and vsock
//!   (a virtio-vsock function with an in-process host multiplexer).
//! - A guest that misprograms a device (rings or buffers outside its
//!   memory) gets `DEVICE_NEEDS_RESET`, logged (rate-limited); the VM runs on.
//!
//! ## Threads, and who waits for what
//!
//! | thread | what it does | what it may wait for |
//! |--------|--------------|----------------------|
//! | vCPU (one per vCPU) | `KVM_RUN`; port and MMIO exits: register and configuration accesses only | a device's register lock, never held across I/O |
//! | device worker (`virtio-slotN`, one per activated function) | the function's queues: kicked through `KVM_IOEVENTFD` ([`ioevents`]), served by the device's queue handler | the device's backend: a disk `pread`/`fdatasync`, a tap write |
//! | virtio-net receive pump (one per NIC) | frames from the tap into the guest's buffers; parked while the guest posts none | the tap |
//! | virtio-fs setup, watch and interrupt threads (per share) | the vhost-user round trips of DRIVER_OK and reset (each bounded by a time limit), the backend's call eventfds | the daemon, at most the time limit |
//! | held-writes ticker (`held-io-<vm>`, one per VM where KVM holds port writes) | hands held console and latch writes to the devices when no vCPU exit does: every 10 ms while the guest writes, every 100 ms when quiet | the ring's consumer lock, a device's register lock |
//! | control thread | commands of the async API, guest requests, ejects, pause and stop | device pause hooks (quiesced workers), vCPU parking |
//!
//! Interrupts leave through irqfds: legacy lines (8250, SCI) and MSI-X
//! messages on MSI routes ([`irq::KvmMsiRoutes`]). A driver reset never
//! waits for a request in flight: the device status reads non-zero until
//! the old worker has ended (the virtio reset handshake). A vCPU or device
//! worker that panics ends the run with `VmmError` and wakes every waiter.
//! Guest-fed events to the control thread are coalesced (at most four
//! queued), the console tap is a ring and the console file is capped.
//!
//! Not yet: PCI passthrough, memory, processor and CPU-group updates
//! (`supported()` false, accessor `None`), save and restore
//! (`ActionNotSupported`; every device has a state hook that answers
//! `NotSupported` until then).

pub mod arch;
pub mod backend;
pub mod build;
pub mod capabilities;
pub mod coalesced;
pub mod console;
pub mod control;
pub mod device_window;
pub mod error;
pub mod exits;
pub mod guest_probe;
pub mod huge_pages;
pub mod ioevents;
pub mod irq;
pub mod managers;
pub mod memory;
pub mod pci;
pub mod snapshot;
pub mod stats;
pub mod uvm;
pub mod vcpu;

pub use arch::boot::payload::RealModePayload;
pub use backend::{KvmBackend, NAME as BACKEND_NAME};
pub use uvm::KvmUvm;

/// Registers the kvm backend in `registry` (it reports itself unavailable on
/// hosts that cannot boot a Linux guest; see [`KvmBackend`]'s `check_available`).
///
/// # Errors
/// `AlreadySet` if a backend named `"kvm"` is registered already.
pub fn register(registry: &mut uvm_api::Registry) -> uvm_api::Result<()> {
    registry.register(std::sync::Arc::new(KvmBackend::new()))
}
