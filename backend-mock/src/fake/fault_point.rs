//! [`FaultPoint`]: the operations fault injection can make fail, and the
//! error they then return.

use std::fmt;

/// An operation that [`crate::Faults::fail_next`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// `Uvm::start` (the VM then ends `Stopped` with reason `StartFailed`).
    Start,
    /// `Uvm::stop`.
    Stop,
    /// `Uvm::pause`.
    Pause,
    /// `Uvm::resume`.
    Resume,
    /// `Uvm::save`.
    Save,
    /// `Uvm::stats`.
    Stats,
    /// `ScsiManager::add_controller`.
    AddScsiController,
    /// `ScsiManager::add_disk`.
    AddDisk,
    /// `ScsiManager::remove_disk`.
    RemoveDisk,
    /// `VpmemManager::add_device`.
    AddVpmem,
    /// `VpmemManager::remove_device`.
    RemoveVpmem,
    /// `NetworkManager::add_nic`.
    AddNic,
    /// `NetworkManager::remove_nic`.
    RemoveNic,
    /// `SharedFolderManager::add_share`.
    AddShare,
    /// `SharedFolderManager::remove_share`.
    RemoveShare,
    /// `PciManager::add_device`.
    AddPci,
    /// `PciManager::remove_device`.
    RemovePci,
    /// `VmSocketManager::listen`.
    Listen,
    /// `VmSocketManager::connect`.
    Connect,
    /// `MemoryManager::update_memory`.
    UpdateMemory,
    /// `ProcessorManager::update_limits`.
    UpdateProcessor,
    /// `CpuGroupManager::set_cpu_group`.
    SetCpuGroup,
    /// `ScsiManager::remove_controller`.
    RemoveScsiController,
    /// `VpmemManager::add_controller`.
    AddVpmemController,
}

impl FaultPoint {
    /// The snake-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultPoint::Start => "start",
            FaultPoint::Stop => "stop",
            FaultPoint::Pause => "pause",
            FaultPoint::Resume => "resume",
            FaultPoint::Save => "save",
            FaultPoint::Stats => "stats",
            FaultPoint::AddScsiController => "add_scsi_controller",
            FaultPoint::AddDisk => "add_disk",
            FaultPoint::RemoveDisk => "remove_disk",
            FaultPoint::AddVpmem => "add_vpmem",
            FaultPoint::RemoveVpmem => "remove_vpmem",
            FaultPoint::AddNic => "add_nic",
            FaultPoint::RemoveNic => "remove_nic",
            FaultPoint::AddShare => "add_share",
            FaultPoint::RemoveShare => "remove_share",
            FaultPoint::AddPci => "add_pci",
            FaultPoint::RemovePci => "remove_pci",
            FaultPoint::Listen => "listen",
            FaultPoint::Connect => "connect",
            FaultPoint::UpdateMemory => "update_memory",
            FaultPoint::UpdateProcessor => "update_processor",
            FaultPoint::SetCpuGroup => "set_cpu_group",
            FaultPoint::RemoveScsiController => "remove_scsi_controller",
            FaultPoint::AddVpmemController => "add_vpmem_controller",
        }
    }
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error inside [`uvm_api::Error::Backend`] returned by an operation that
/// [`crate::Faults::fail_next`] made fail.
#[derive(Debug, thiserror::Error)]
#[error("injected fault at {point}")]
pub struct InjectedFault {
    /// Where the fault was injected.
    pub point: FaultPoint,
}
