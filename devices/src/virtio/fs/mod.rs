//! virtio-fs (device type 26) through vhost-user: the device model exposes
//! the configuration (tag, request queue count) and the queues, and hands
//! the rings to a vhost-user backend, normally one `virtiofsd` per share.
//!
//! The backend maps guest memory itself, so guest RAM must be file-backed
//! and mapped shared (one memfd, `GuestMemoryMmap::from_ranges_with_files`);
//! activation over anonymous memory fails with
//! [`FsError::AnonymousMemory`]. No vCPU thread waits for the backend: the
//! vhost-user round trips of DRIVER_OK and reset run on the device's setup
//! thread ([`setup::THREAD_NAME`]), each bounded by a time limit
//! ([`device::DEFAULT_TIMEOUT`]). Queue notifications are forwarded as
//! writes to the ring's kick eventfd; the backend's call eventfds become
//! queue interrupts on a per-device thread ([`irq::THREAD_NAME`]), which
//! also marks the device as needing a reset when the backend hangs up.
//!
//! [`VirtiofsdProcess`] starts and reaps a `virtiofsd`;
//! [`find_virtiofsd`] locates its binary.

pub mod config;
pub mod daemon;
pub mod device;
pub mod error;
pub mod frontend;
pub mod irq;
pub mod memory;
pub mod session;
pub mod setup;
pub mod watchdog;

pub use config::{CONFIG_LEN, FsConfig, TAG_LEN};
pub use daemon::{VirtiofsdProcess, find_virtiofsd};
pub use device::VhostUserFs;
pub use error::FsError;

/// Virtio device type of virtio-fs.
pub const VIRTIO_ID_FS: u32 = 26;
