//! Optional capability managers, discovered through accessors on [`crate::Uvm`].
//!
//! Each manager's add and remove calls are valid before `start` (cold plug:
//! the device is part of the boot configuration) and while running (hot plug),
//! through the same call. Every remove returns a [`crate::Removal`].

mod cpu_group;
mod memory;
mod network;
mod pci;
mod processor;
mod scsi;
mod shares;
mod vpmem;
mod vsock;

pub use cpu_group::CpuGroupManager;
pub use memory::MemoryManager;
pub use network::NetworkManager;
pub use pci::PciManager;
pub use processor::ProcessorManager;
pub use scsi::ScsiManager;
pub use shares::SharedFolderManager;
pub use vpmem::VpmemManager;
pub use vsock::{
    VMADDR_PORT_ANY, VmSocketManager, VsockIo, VsockListener, VsockStream, validate_port,
};
