//! # uvm-tools: developer and lab tools, apart from the production crates
//!
//! - [`selftest`]: checks that a `/dev/kvm` runs guest code and times its
//!   exits (a few real-mode instructions, no backend involved); the
//!   `kvm-selftest` binary prints its report.
//! - [`guest_assets`]: the test guest's boot files, as `cargo xtask guest`
//!   describes them in the `assets.json` that `UVM_GUEST_ASSETS` names.
//! - [`lab_main`]: the runtime-and-assets frame of the binaries below that
//!   boot the test guest.
//! - [`threads`]: a process's threads and the CPU time each takes.
//! - [`diagnosis`]: what those binaries print when the guest did not do
//!   what they waited for (agent, exit counters, the guest's PCI view).
//!
//! The binaries, meant for `cargo xtask lab -- <name>`:
//!
//! - `kvm-selftest [--device PATH] [--exits N]`: the [`selftest`] report; runs
//!   on any `/dev/kvm`, including hosts whose KVM cannot boot Linux.
//! - `kvm-boot-check [--console]`: boots the Debian test guest through the
//!   kvm backend and checks that its power-off and a graceful stop end
//!   `Shutdown`.
//! - `kvm-hotplug-cycles [--cycles N]`: hot-adds and removes each device kind
//!   many times in one guest and checks that the host process does not grow.

pub mod diagnosis;
pub mod guest_assets;
pub mod lab_main;
pub mod selftest;
pub mod threads;
