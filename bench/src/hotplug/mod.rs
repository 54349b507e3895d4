//! `hotplug-bench`: hot-add latency of a running guest, backend-kvm and
//! QEMU (`-M pc`, ACPI PCI hotplug) side by side in the nested lab.
//!
//! Each VMM boots the test guest once; then, per device [`Kind`] and run,
//! the device is added (a fresh id, LUN, MAC, size or tag each run), the
//! clock starts when the add call returns (backend-kvm's manager call,
//! QEMU's QMP `device_add`), and the guest probe ([`uvm_api::GuestProbe`],
//! the guest agent over vsock) is asked in a tight loop until the guest
//! shows the device ([`poll`]). The device is then removed: the removal
//! time runs until the VMM reports the guest let go of it (backend-kvm's
//! [`uvm_api::Removal`] completing, QEMU's `DEVICE_DELETED` event), and
//! "gone" until the probe no longer shows it.
//!
//! Modules: [`kind`] (device kinds and how the guest shows them),
//! [`device`] (the per-run devices and their host files), [`poll`] (the
//! probe loop), [`target`] (what a VMM under test offers), [`api`] (any
//! uvm-api VM as a target), [`kvm`] (booting backend-kvm's guest),
//! [`qemu`] (QEMU as a target; [`qmp`] and [`vsock_io`] serve it), [`run`]
//! (the measuring loop) and [`report`] (results, table, JSON).

pub mod api;
pub mod device;
pub mod kind;
pub mod kvm;
pub mod poll;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod run;
pub mod target;
pub mod vsock_io;

pub use kind::Kind;
