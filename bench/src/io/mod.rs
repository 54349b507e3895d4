//! `io-bench`: device throughput of a running guest, backend-kvm and QEMU
//! (`-M pc`, virtio-scsi-pci, vhost-vsock-pci, virtio-net-pci on a tap)
//! side by side in the nested lab.
//!
//! Each run boots a fresh guest per VMM (alternated: kvm 1, qemu 1, kvm 2,
//! ...), hot-adds a raw disk image on a virtio-scsi controller and a NIC on
//! a tap (the hot-add paths of [`crate::hotplug`]), and has the guest agent
//! move the bytes ([`uvm_guest_agent::protocol::Op::DiskBench`],
//! `vsock_sink`, `vsock_send`, `net_send`):
//!
//! - the disk: one sequential write pass and one read pass over the image
//!   with 1 MiB `O_DIRECT` requests (timed in the guest, the write's
//!   `fdatasync` included), and 4 KiB `O_DIRECT` random reads by N threads
//!   (queue depth N) for a fixed time;
//! - vsock: one stream connection each way, timed on the host from the
//!   first byte to the other end's acknowledgement (host to guest) or end
//!   of stream (guest to host);
//! - the NIC: broadcast raw frames out of the guest's interface, counted on
//!   the host by the tap's `rx_bytes`, timed from the request to the last
//!   growth of that counter.
//!
//! For backend-kvm every figure also gets the VM exits per second during
//! it, from the `exits.total` counter of [`uvm_api::Uvm::stats`].
//!
//! Modules: [`args`] (command line), [`report`] (figures and the table),
//! [`tap`] (the host side of the NIC), [`guest`] (a booted guest of either
//! VMM with its disk, NIC and host vsock ends), [`measure`] (the
//! measurements) and [`watchdog`] (a time limit on each phase).

pub mod args;
pub mod guest;
pub mod measure;
pub mod report;
pub mod tap;
pub mod watchdog;
