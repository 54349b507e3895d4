//! # uvm-backend-kvm: the `"kvm"` backend
//!
//! An in-process virtual machine monitor on `kvm-ioctls`: each vCPU runs
//! `KVM_RUN` on its own OS thread, port and MMIO exits go through the
//! device buses of `uvm-devices`, and the async [`uvm_api::Uvm`] API talks
//! to a control thread through a tokio channel.
//!
//! What works:
//!
//! - VM set-up ([`vmm`]): guest RAM in the PC layout ([`layout`]: below 3 GiB,
//!   the rest from 4 GiB), in-kernel irqchip and PIT, CPUID from KVM with
//!   per-vCPU APIC ids and the hypervisor bit ([`cpuid`]), boot MSRs
//!   ([`msrs`]), ACPI tables with fixed hardware (FADT/PM1a/GPE0, SCI on
//!   IRQ 9, MADT, DSDT with `_S5`, a `PNP0A03` root bridge and its
//!   hot-pluggable slots); the PIT discards lost ticks ([`pit`]).
//! - Linux direct boot ([`boot::linux`]): bzImage via linux-loader, 64-bit
//!   boot protocol with identity page tables; or a real-mode test payload
//!   ([`boot::payload`]) through [`KvmBackend::create_with_payload`].
//! - Lifecycle ([`uvm::KvmUvm`]): start, stop (graceful through the ACPI
//!   power button with a timeout, then force), pause/resume (vCPUs kicked
//!   out of `KVM_RUN` with a signal + `immediate_exit`, parked; the guest
//!   clock saved with `KVM_GET_CLOCK` and restored with `KVM_SET_CLOCK` so
//!   guest time does not jump), wait with any number of waiters.
//! - Exit reasons: S5 = Shutdown; i8042 `0xfe` or the FADT reset register =
//!   Reboot; triple fault, internal error, failed entry = Crash; pvpanic write
//!   or the kernel's panic line on the console = GuestPanic (Debian's cloud
//!   kernel has the pvpanic driver only as a module); failures before the
//!   guest runs = StartFailed with the cause.
//! - Stats: per-vCPU thread CPU time, resident guest memory (`mincore`),
//!   uptime, exit counters (`exits.*`), console bytes, clock restores.
//! - Console ([`console`]): 8250 on COM1 to the configured sink, plus an
//!   in-memory tap ([`uvm::KvmUvm::console_output`]).
//!
//! Measured in the nested lab (`cargo xtask lab -- kvm-boot-check`, QEMU TCG
//! L1 with emulated SVM, 1 vCPU, 512 MiB): the Debian cloud guest prints
//! `UVM_GUEST_READY` 7.9 s after `start()` (about 45 000 exits, nearly all
//! serial-console port I/O), and its `poweroff -f` ends the VM with
//! `Shutdown` through ACPI S5. A graceful stop of that guest ends `Killed`:
//! its kernel has the ACPI `button` driver only as a module, which the test
//! initramfs does not load (nor does it run an acpid).
//!
//! - PCI ([`pci`]): a root bus from boot, configuration through port
//!   `0xcf8`, BARs in a window inside the DSDT's `PCI0._CRS`, MSI-X delivered
//!   with `KVM_SIGNAL_MSI`, queue notifications as MMIO exits.
//! - vsock ([`vsock`]): a virtio-vsock function (slot 1, guest CID 3) with an
//!   in-process host multiplexer behind [`uvm_api::VmSocketManager`]
//!   (`supported(VmSocket, Add)` is true). A guest that misprograms the
//!   device (rings or buffers outside its memory) gets `DEVICE_NEEDS_RESET`,
//!   logged; the VM runs on.
//! - Guest probe ([`guest_probe`]): the guest agent over that vsock; a
//!   `Crash` trigger is a triple fault the VMM injects into vCPU 0.
//!
//! - Device hot-add ([`hotplug`], [`managers`]): SCSI controllers
//!   (virtio-scsi, LUNs added and removed through its event queue), VPMem
//!   devices (virtio-pmem, the image mapped above guest RAM) and NICs
//!   (virtio-net on a tap) are virtio-pci functions; before start they are
//!   on the bus at boot, while running they arrive through ACPI PCI hotplug
//!   (a register block at `0xae00` and GPE 1, the guest's acpiphp scans the
//!   slot) and leave when the guest ejects them (two-phase removal).
//!   `supported()` is true for add and remove of these three.
//!
//! Not yet: shared folders, PCI passthrough, memory/processor updates
//! (`supported()` false, accessor `None`; a config with boot-time shares is
//! refused with `NotSupported`), save/restore (`ActionNotSupported`).

pub mod arch;
pub mod backend;
pub mod build;
pub mod capabilities;
pub mod console;
pub mod control;
pub mod device_window;
pub mod error;
pub mod exits;
pub mod guest_probe;
pub mod irq;
pub mod managers;
pub mod memory;
pub mod pci;
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
