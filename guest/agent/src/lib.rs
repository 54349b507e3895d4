//! # uvm-guest-agent
//!
//! The agent that runs inside uvm test guests (started by the guest image's
//! `/init`) and answers a small, versioned, line-delimited JSON protocol on a
//! vsock port, so that host-side tests can look at the guest from inside:
//! block devices and their SCSI addresses, raw reads and writes, network
//! interfaces, virtio-fs mounts, pmem devices, device hot-plug waits, uptime,
//! memory, and power actions.
//!
//! The protocol is documented in `guest/README.md`; its types live in
//! [`protocol`] so that a host-side client can reuse them. Every handler in
//! [`handlers`] takes the root of the file system it inspects (`/` in a
//! guest, a temporary directory in tests), and every side effect that cannot
//! be faked with files (mounting, running `ip`/`ping`, powering off) goes
//! through the [`system::System`] trait.
//!
//! With the `client` feature, `client::AgentClient` is the host side: it
//! speaks the protocol over any async byte stream (a vsock connection from
//! a backend's `VmSocketManager`) and implements `uvm_api::GuestProbe`.
//! The guest binary is built without it, so it does not pull in tokio.

pub mod agent;
pub mod flood;
pub mod handlers;
pub mod hex;
pub mod iobench;
pub mod protocol;
pub mod server;
pub mod system;
pub mod vsock;

#[cfg(feature = "client")]
pub mod client;

pub use agent::Agent;
pub use protocol::{PROTOCOL_VERSION, Request, Response};

/// The vsock port the agent listens on unless told otherwise.
pub const DEFAULT_PORT: u32 = 1024;
