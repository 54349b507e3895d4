//! What a capability is about ([`Resource`]) and what is done to it ([`Operation`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of resource a VM may have, each managed by one capability manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resource {
    /// Virtual persistent memory devices ([`crate::VpmemManager`]).
    #[serde(rename = "vpmem")]
    VPMem,
    /// SCSI controllers and disks ([`crate::ScsiManager`]).
    Scsi,
    /// Network adapters ([`crate::NetworkManager`]).
    Network,
    /// SMB-based shared folders (Hyper-V VSMB), through [`crate::SharedFolderManager`].
    Vsmb,
    /// Host PCI device assignment ([`crate::PciManager`]).
    Pci,
    /// 9p shared folders, through [`crate::SharedFolderManager`].
    Plan9,
    /// virtio-fs shared folders, through [`crate::SharedFolderManager`].
    VirtioFs,
    /// Host/guest sockets (vsock or hvsock), through [`crate::VmSocketManager`].
    VmSocket,
    /// Guest memory size updates ([`crate::MemoryManager`]).
    Memory,
    /// Processor limits updates ([`crate::ProcessorManager`]).
    Processor,
    /// Host CPU group membership ([`crate::CpuGroupManager`]).
    CpuGroup,
}

impl Resource {
    /// Every resource, in declaration order.
    pub const ALL: [Resource; 11] = [
        Resource::VPMem,
        Resource::Scsi,
        Resource::Network,
        Resource::Vsmb,
        Resource::Pci,
        Resource::Plan9,
        Resource::VirtioFs,
        Resource::VmSocket,
        Resource::Memory,
        Resource::Processor,
        Resource::CpuGroup,
    ];

    /// The lower-case name used in messages and serialized forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::VPMem => "vpmem",
            Resource::Scsi => "scsi",
            Resource::Network => "network",
            Resource::Vsmb => "vsmb",
            Resource::Pci => "pci",
            Resource::Plan9 => "plan9",
            Resource::VirtioFs => "virtio_fs",
            Resource::VmSocket => "vm_socket",
            Resource::Memory => "memory",
            Resource::Processor => "processor",
            Resource::CpuGroup => "cpu_group",
        }
    }

    /// The operations that the contract defines for this resource at all.
    ///
    /// A backend can never answer `supported` true for a pair outside this
    /// list, because no manager method exists for it.
    pub fn defined_operations(self) -> &'static [Operation] {
        match self {
            Resource::VPMem
            | Resource::Scsi
            | Resource::Network
            | Resource::Vsmb
            | Resource::Pci
            | Resource::Plan9
            | Resource::VirtioFs => &[Operation::Add, Operation::Remove],
            Resource::VmSocket => &[Operation::Add],
            Resource::Memory | Resource::Processor | Resource::CpuGroup => &[Operation::Update],
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is done to a [`Resource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Attach or create (cold plug before start, hot plug while running).
    /// For [`Resource::VmSocket`]: listen and connect.
    Add,
    /// Detach or remove (two-phase: see [`crate::Removal`]).
    Remove,
    /// Change a setting of a running VM.
    Update,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 3] = [Operation::Add, Operation::Remove, Operation::Update];

    /// The lower-case name used in messages and serialized forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Remove => "remove",
            Operation::Update => "update",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Resource::ALL {
            assert_eq!(r.as_str().parse::<Resource>().unwrap(), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert!("floppy".parse::<Resource>().is_err());
        assert_eq!(Operation::Update.to_string(), "update");
    }

    #[test]
    fn every_resource_defines_some_operation() {
        for r in Resource::ALL {
            assert!(!r.defined_operations().is_empty(), "{r}");
        }
    }
}
