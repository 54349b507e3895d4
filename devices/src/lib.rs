//! # uvm-devices (not yet functional)
//!
//! This crate will hold the device models of the KVM backend: the virtio-pci
//! transport with MSI-X on a PCI root bus, ACPI PCI hotplug slots, and the
//! virtio-scsi, virtio-pmem, virtio-net, virtio-vsock and virtio-fs devices,
//! each testable on mock guest memory.
//!
//! It exports nothing yet.
