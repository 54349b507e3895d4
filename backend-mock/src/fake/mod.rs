//! The stateful fake backend: a VM that behaves like one, without a hypervisor.
//!
//! [`FakeBackend`] creates [`FakeUvm`]s that follow the lifecycle table of
//! `uvm-api` exactly, keep real device tables with the same limits and
//! errors a hypervisor would give, run a simulated guest (see
//! [`FakeUvm::guest_view`] and [`uvm_api::Uvm::guest_probe`]) that reads and
//! writes the real host files behind its disks and shares, releases removed
//! devices after a delay (two-phase removal), passes bytes over simulated
//! vsock connections, and reports moving statistics.
//!
//! A [`Profile`] chooses which capabilities a backend has, so code can be
//! tested against backends that lack some; [`Faults`] injects failures and
//! guest exits.
//!
//! ## Layout
//!
//! The contract's shared logic comes from `uvm-api`: the lifecycle state
//! and exit in a [`uvm_api::ExitCell`], the device tables with two-phase
//! removal as [`uvm_api::DeviceTable`]s, the VPMem checks in
//! [`uvm_api::VpmemDevice::check_against`]. One file per concern here, and
//! no file imports one that imports it back (lower files first):
//!
//! - `profile.rs`: [`Profile`], the capabilities a backend has.
//! - `options.rs`: [`FakeOptions`], profile and simulated delays.
//! - `fault_point.rs`: [`FaultPoint`] and [`InjectedFault`].
//! - `faults.rs`: [`Faults`]; reaches its VM through the `GuestExit` trait.
//! - `clock.rs`: uptime and running time, pauses excluded.
//! - `console.rs`: the simulated guest's console lines.
//! - `eject.rs`: the task that releases a hot-removed device after a delay.
//! - `state/`: the per-device data (`scsi`, `vpmem`, `network`, `shares`,
//!   `pci`, `vsock`, `resources`), leaf files.
//! - `machine.rs`: `Machine`, everything behind a VM's lock.
//! - `core.rs`: `Core`, one VM (machine lock, exit cell, faults) and the
//!   helpers every operation uses; it imports no operation.
//! - `removal.rs`: cold and two-phase hot unplug, for every manager.
//! - `lifecycle.rs`: start, stop, pause, resume.
//! - `managers/`: the capability managers on `Core`, one file each
//!   (`scsi`, `vpmem`, `network`, `shares`, `pci`, `vsock`, `resources`).
//! - `guest/`: the simulated guest: `view` ([`GuestView`]), `naming` (Linux
//!   device names), `share_files` (its access to shared folders), `probe`
//!   (its answers to [`uvm_api::GuestProbe`]).
//! - `stats.rs`: statistics from the clocks, config and device counters.
//! - `snapshot.rs`: save and restore.
//! - `vm.rs`: [`FakeUvm`], the [`uvm_api::Uvm`] handle on a `Core`.
//! - `backend.rs`: [`FakeBackend`], [`BACKEND_NAME`] and [`register`].

mod backend;
mod clock;
mod console;
mod core;
mod eject;
mod fault_point;
mod faults;
mod guest;
mod lifecycle;
mod machine;
mod managers;
mod options;
mod profile;
mod removal;
mod snapshot;
mod state;
mod stats;
mod vm;

pub use backend::{BACKEND_NAME, FakeBackend, register};
pub use fault_point::{FaultPoint, InjectedFault};
pub use faults::Faults;
pub use guest::view::GuestView;
pub use options::FakeOptions;
pub use profile::Profile;
pub use vm::FakeUvm;
