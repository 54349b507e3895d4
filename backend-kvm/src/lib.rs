//! # uvm-backend-kvm (not yet a backend)
//!
//! This crate will hold an in-process virtual machine monitor on
//! `kvm-ioctls`, `kvm-bindings`, `vm-memory` and `virtio-queue` that boots a
//! Linux guest and hot-adds virtio-pci devices into it while it runs, and
//! implements the `uvm-api` traits as the `"kvm"` backend.
//!
//! It does not implement any `uvm-api` trait yet and is not registered in
//! any registry: a shim cannot pick `"kvm"` until this crate can boot a
//! guest. See the project README for the plan.
//!
//! What it has today is a diagnostic, [`probe`]: it opens `/dev/kvm`,
//! creates a VM with one vCPU, runs a few instructions of real-mode code
//! that write to I/O ports and halt, and reports how long each step took.
//! The `kvm-probe` binary prints that report; `cargo xtask lab -- kvm-probe`
//! runs it inside the nested lab where `/dev/kvm` can boot Linux.

pub mod probe;
