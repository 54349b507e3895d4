//! Running a built VM: the control thread and its protocol.
//!
//! The async API ([`crate::uvm::KvmUvm`]) talks to the control thread
//! through a channel of [`protocol::VmmEvent`]s; devices and vCPU threads
//! report on the same channel, so the control thread sees every event in
//! one order and the first event that ends the run decides the exit
//! reason. [`launch()`] starts the vCPU threads and the control thread;
//! [`controller`] is the control thread (pause, resume, power button,
//! injected crash, ejects); [`guest_events`] keeps what the guest reports
//! bounded; [`teardown`] is the one way a VM's run ends.

pub mod controller;
pub mod guest_events;
pub mod launch;
pub mod protocol;
pub mod teardown;

pub use launch::launch;
