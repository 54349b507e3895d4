//! What a fake VM holds of each kind of device, as plain data: one leaf
//! file per kind, imported by [`super::machine::Machine`] and changed by
//! the operations in [`super::managers`]. None of these files imports
//! another file of the crate.

pub(crate) mod network;
pub(crate) mod pci;
pub(crate) mod resources;
pub(crate) mod scsi;
pub(crate) mod shares;
pub(crate) mod vpmem;
pub(crate) mod vsock;
