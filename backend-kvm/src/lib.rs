//! # uvm-backend-kvm (not yet functional)
//!
//! This crate will hold an in-process virtual machine monitor on
//! `kvm-ioctls`, `kvm-bindings`, `vm-memory` and `virtio-queue` that boots a
//! Linux guest and hot-adds virtio-pci devices into it while it runs, and
//! implements the `uvm-api` traits as the `"kvm"` backend.
//!
//! It exports nothing yet, and is not registered in any registry: a shim
//! cannot pick `"kvm"` until this crate can boot a guest. See the project
//! README for the plan.
