//! # uvm-examples: the shim side of uvm
//!
//! Small functions a container shim builds on the uvm traits, written
//! against `&dyn Uvm` so they run on any backend, and unit-tested with the
//! `mockall` mocks of `uvm-backend-mock`. The `shim` example drives a whole
//! VM with them, with the backend named on the command line.

mod backends;
mod layers;
mod shutdown;

pub use backends::{BackendChoice, choose_backend, default_registry};
pub use layers::{LayerAttachment, attach_layer, detach_layer};
pub use shutdown::shutdown;
