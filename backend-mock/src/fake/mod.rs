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

mod backend;
mod clock;
mod console;
mod core;
mod eject;
mod faults;
mod guest;
mod lifecycle;
mod machine;
mod network;
mod pci;
mod profile;
mod resources;
mod scsi;
mod shares;
mod snapshot;
mod stats;
mod table;
mod view;
mod vm;
mod vpmem;
mod vsock;

pub use backend::{FakeBackend, FakeOptions};
pub use faults::{FaultPoint, Faults, InjectedFault};
pub use profile::Profile;
pub use view::GuestView;
pub use vm::FakeUvm;

use std::sync::Arc;

use uvm_api::Registry;

/// The name the fake backend is registered under.
pub const BACKEND_NAME: &str = "mock";

/// Registers a [`FakeBackend`] with every capability ([`FakeBackend::new`])
/// under [`BACKEND_NAME`].
///
/// # Errors
/// `AlreadySet` if a backend called `"mock"` is registered already.
pub fn register(registry: &mut Registry) -> uvm_api::Result<()> {
    registry.register(Arc::new(FakeBackend::new()))
}
