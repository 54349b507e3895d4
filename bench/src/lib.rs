//! # uvm-bench: boot, hot-add and I/O benchmarks in the nested lab
//!
//! `boot-bench` (run it with `cargo xtask lab --with-qemu -- boot-bench
//! --runs 5`) boots the Debian test guest N times with backend-kvm and N
//! times with `qemu-system-x86_64 -M microvm -accel kvm` on the same
//! `/dev/kvm`, same kernel, initramfs and command line, and reports per run
//! and as medians:
//!
//! - the time from `start()` (kvm) or spawning QEMU to `UVM_GUEST_READY` on
//!   the serial console, and to the agent's first answer over vsock (for
//!   backend-kvm once it offers `guest_probe()`);
//! - the VMM's resident memory while the guest is up, and how much of it
//!   is beyond guest memory (process `Rss` minus the `Rss` of the guest RAM
//!   mapping, from `/proc/<pid>/smaps`);
//! - how long the guest kernel took to unpack its initramfs (from its
//!   console log, [`kernel_log`]: a phase bound by guest memory faults);
//! - for backend-kvm, the exits to user space until the agent answered
//!   (`--kvm-baseline` adds the same figures for another build, to compare
//!   commits in one run).
//!
//! `hotplug-bench` (`cargo xtask lab [--with-qemu] -- hotplug-bench --runs
//! 5`) measures hot-add latency on one running guest per VMM: from the add
//! call returning to the guest agent seeing a SCSI LUN, a NIC, a pmem
//! device or a share, and the removal (see [`hotplug`]).

pub mod agent;
pub mod assets;
pub mod error;
pub mod hotplug;
pub mod io;
pub mod kernel_log;
pub mod kvm;
pub mod qemu;
pub mod sample;
pub mod smaps;
pub mod stats;

pub use error::{BenchError, Result};
