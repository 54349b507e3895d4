//! The capability managers of a fake VM, as `impl` blocks on
//! [`super::core::Core`]: each file checks a call against the profile, the
//! state and its device table, then changes the [`super::machine::Machine`].

pub(crate) mod network;
pub(crate) mod pci;
pub(crate) mod resources;
pub(crate) mod scsi;
pub(crate) mod shares;
pub(crate) mod vpmem;
pub(crate) mod vsock;
