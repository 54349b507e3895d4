//! Descriptions of what can be attached to a VM, mirroring the hcsshim model.
//!
//! Formats are always explicit: a backend never probes an image to learn its
//! format, because a guest can rewrite a raw image to look like anything.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mac::MacAddress;
use crate::resource::Resource;
use crate::validate;

/// How a SCSI disk's host side is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DiskFormat {
    /// A raw image file.
    Raw,
    /// A whole host block device (for example `/dev/loop3`).
    BlockDevice,
    /// A VHD image.
    Vhd,
    /// A VHDX image.
    Vhdx,
    /// A qcow2 image.
    Qcow2,
}

/// A disk attached to a SCSI controller at a LUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScsiDisk {
    /// Index of the controller (added with [`crate::ScsiManager::add_controller`]).
    pub controller: u8,
    /// Logical unit number on that controller.
    pub lun: u8,
    /// Absolute host path of the image or block device.
    pub path: PathBuf,
    /// How the host side is stored.
    pub format: DiskFormat,
    /// Whether the guest is refused writes.
    pub read_only: bool,
}

impl ScsiDisk {
    /// Checks what can be checked without a backend: the host path is absolute and exists.
    pub fn validate(&self) -> Result<()> {
        validate::existing_absolute_path("path", &self.path)
    }

    /// The identifier used in errors and removal handles: `controller:lun`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.controller, self.lun)
    }
}

/// A network adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// Identifier chosen by the caller, unique per VM.
    pub id: String,
    /// Host endpoint: a tap device name on Linux, an HNS endpoint id on Windows.
    pub endpoint: String,
    /// The adapter's MAC address, unique per VM.
    pub mac: MacAddress,
}

impl Nic {
    /// Checks the id and endpoint are well formed.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("id", &self.id)?;
        validate::identifier("endpoint", &self.endpoint)
    }
}

/// The protocol used to share a host folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// virtio-fs.
    VirtioFs,
    /// 9p.
    Plan9,
    /// Hyper-V virtual SMB.
    Vsmb,
}

impl ShareKind {
    /// The resource this kind of share is accounted under.
    pub fn resource(self) -> Resource {
        match self {
            ShareKind::VirtioFs => Resource::VirtioFs,
            ShareKind::Plan9 => Resource::Plan9,
            ShareKind::Vsmb => Resource::Vsmb,
        }
    }
}

/// A host folder shared with the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFolder {
    /// The protocol.
    pub kind: ShareKind,
    /// Name (virtio-fs tag, 9p aname, VSMB share name), unique per VM.
    pub name: String,
    /// Absolute path of an existing host directory.
    pub host_path: PathBuf,
    /// Whether the guest is refused writes.
    pub read_only: bool,
    /// If not empty, only these file names (relative to `host_path`) are visible.
    pub allowed_files: Vec<String>,
}

impl SharedFolder {
    /// Checks the name, host path and allowed files.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("name", &self.name)?;
        validate::existing_absolute_path("host_path", &self.host_path)?;
        if !self.host_path.is_dir() {
            return Err(crate::Error::invalid_argument(
                "host_path",
                format!("{} is not a directory", self.host_path.display()),
            ));
        }
        for file in &self.allowed_files {
            validate::relative_file_name("allowed_files", file)?;
        }
        Ok(())
    }
}

/// A host PCI device assigned to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// Identifier chosen by the caller, unique per VM.
    pub id: String,
    /// Host location of the device (for example `/sys/bus/pci/devices/0000:01:00.0`).
    pub host_path: PathBuf,
    /// Virtual function index, for SR-IOV devices.
    pub virtual_function: Option<u16>,
}

impl PciDevice {
    /// Checks the id and host path.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("id", &self.id)?;
        validate::existing_absolute_path("host_path", &self.host_path)
    }
}

/// Processor limits of a running VM. `None` leaves a limit as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorLimits {
    /// Maximum share of host CPU, in hundredths of a percent (1..=10000).
    pub limit: Option<u32>,
    /// Relative weight against other VMs (1..=10000).
    pub weight: Option<u32>,
    /// Reserved share of host CPU, in hundredths of a percent (0..=10000).
    pub reservation: Option<u32>,
}

impl ProcessorLimits {
    /// Checks every set field is in range, and at least one is set.
    pub fn validate(&self) -> Result<()> {
        if self.limit.is_none() && self.weight.is_none() && self.reservation.is_none() {
            return Err(crate::Error::invalid_argument(
                "limits",
                "no limit, weight or reservation given",
            ));
        }
        let check = |name: &str, value: Option<u32>, min: u32| match value {
            Some(v) if !(min..=10_000).contains(&v) => Err(crate::Error::invalid_argument(
                name,
                format!("{v} is outside {min}..=10000"),
            )),
            _ => Ok(()),
        };
        check("limit", self.limit, 1)?;
        check("weight", self.weight, 1)?;
        check("reservation", self.reservation, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn processor_limits_are_range_checked() {
        assert!(ProcessorLimits::default().validate().is_err());
        let ok = ProcessorLimits {
            limit: Some(5000),
            ..Default::default()
        };
        ok.validate().unwrap();
        let bad = ProcessorLimits {
            weight: Some(0),
            ..Default::default()
        };
        assert!(
            matches!(bad.validate(), Err(Error::InvalidArgument { argument, .. }) if argument == "weight")
        );
    }

    #[test]
    fn share_validation_names_the_bad_field() {
        let dir = std::env::temp_dir();
        let mut share = SharedFolder {
            kind: ShareKind::VirtioFs,
            name: String::new(),
            host_path: dir.clone(),
            read_only: true,
            allowed_files: vec![],
        };
        assert!(
            matches!(share.validate(), Err(Error::InvalidArgument { argument, .. }) if argument == "name")
        );
        share.name = "data".into();
        share.validate().unwrap();
        share.host_path = "relative/dir".into();
        assert!(
            matches!(share.validate(), Err(Error::InvalidArgument { argument, .. }) if argument == "host_path")
        );
        share.host_path = dir;
        share.allowed_files = vec!["../etc/passwd".into()];
        assert!(
            matches!(share.validate(), Err(Error::InvalidArgument { argument, .. }) if argument == "allowed_files")
        );
    }
}
