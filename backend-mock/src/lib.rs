//! # uvm-backend-mock
//!
//! Two ways to test code written against `uvm-api` without a hypervisor:
//!
//! - [`mocks`] (feature `mocks`, on by default): `mockall` mocks of every
//!   trait, for unit tests of a shim's own logic.
//! - [`FakeBackend`], registered as `"mock"`: a stateful fake that behaves
//!   like a VM (lifecycle, device slots and limits, a simulated guest that sees
//!   hot-added devices, vsock, two-phase removal, moving stats), with
//!   capability profiles and fault injection.

#[cfg(feature = "mocks")]
pub mod mocks;

mod fake;

pub use fake::*;
