//! # uvm-devices
//!
//! The device models of the KVM backend, each usable and testable without
//! KVM: buses that route port and MMIO accesses ([`bus`]), interrupt lines
//! ([`interrupt`]), legacy PC devices (8250 serial, i8042 reset line), ACPI
//! tables and the fixed-hardware power-management block, the PCI root bus,
//! and the virtio-pci transport with its virtio devices.

pub mod acpi;
pub mod bus;
pub mod interrupt;
pub mod legacy;
pub mod pci;
pub mod quiesce;
pub mod release;
pub mod scsi;
pub mod snapshot;
pub mod virtio;
