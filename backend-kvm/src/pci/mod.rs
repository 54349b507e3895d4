//! The PCI side of a VM: where each function sits ([`slots`]) and the hub
//! that plugs and unplugs functions before and while the guest runs
//! ([`hub`], with the KVM memory slots some devices bring, [`memslots`]).
//! The root bus itself is built with the VM ([`crate::build::pci`]).

pub mod hub;
pub mod memslots;
pub mod slots;
