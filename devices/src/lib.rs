//! # uvm-devices
//!
//! The device models of the KVM backend, each usable and testable without
//! KVM: they see the VMM only through small seams ([`bus::BusDevice`] for
//! register accesses, [`interrupt`] for interrupts, [`quiesce::Pausable`]
//! and [`snapshot::Snapshottable`] for pause and state).
//!
//! | module | its job |
//! |--------|---------|
//! | [`bus`] | port and MMIO buses routing an access to the device that owns the address |
//! | [`interrupt`] | interrupt lines and MSI sinks as devices see them, with test doubles |
//! | [`ioevent`] | queue-notification eventfds tied to guest addresses (KVM_IOEVENTFD), with a test double |
//! | [`quiesce`] | the pause hook: a paused device processes no queue and writes no guest memory |
//! | [`snapshot`] | the state hook: a device's state as a versioned, serde-described value |
//! | [`release`] | the device side of two-phase removal: the guest let go of a device |
//! | [`ratelimit`] | log budgets for the log sites a guest can trigger (no host log flood) |
//! | [`thread_guard`] | a panic on a VMM thread (vCPU, device worker) is caught and reported so the VM ends |
//! | [`legacy`] | 8250 serial, i8042 reset line, CMOS, pvpanic |
//! | [`acpi`] | ACPI tables, the fixed-hardware PM block, the PCI hotplug register block and its AML |
//! | [`pci`] | the root bus: configuration access (port 0xcf8, ECAM), BARs, the BAR window |
//! | [`scsi`] | SCSI command emulation for disk LUNs over raw files and block devices |
//! | [`virtio`] | the virtio-pci transport, the run state every device shares, the device worker that serves a function's queues off the vCPU threads, and the devices: net, scsi, vsock, pmem, fs |

pub mod acpi;
pub mod bus;
pub mod interrupt;
pub mod ioevent;
pub mod legacy;
pub mod pci;
pub mod quiesce;
pub mod ratelimit;
pub mod release;
pub mod scsi;
pub mod snapshot;
pub mod thread_guard;
pub mod virtio;
