//! VPMem descriptions: the controller's limits, a device in a slot, and
//! the rules between the two that every backend applies.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::validate;

/// Format of a VPMem image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageFormat {
    /// A raw image mapped as is.
    Raw,
    /// A VHD (v1) image.
    Vhd1,
    /// A VHDX image.
    Vhdx,
}

/// Limits of the VPMem controller, set once with [`crate::VpmemManager::add_controller`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpmemController {
    /// How many devices the controller can hold.
    pub max_devices: u32,
    /// The largest image the controller can map, in bytes.
    pub max_size_bytes: u64,
}

impl VpmemController {
    /// Checks both limits are above zero (`InvalidArgument`, argument
    /// `controller`).
    pub fn validate(&self) -> Result<()> {
        if self.max_devices == 0 || self.max_size_bytes == 0 {
            return Err(Error::invalid_argument(
                "controller",
                "max_devices and max_size_bytes must be above zero",
            ));
        }
        Ok(())
    }
}

/// A persistent-memory device backed by an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpmemDevice {
    /// Slot number, below the controller's `max_devices`.
    pub id: u32,
    /// Absolute host path of the image.
    pub path: PathBuf,
    /// Whether the guest is refused writes.
    pub read_only: bool,
    /// The image's format.
    pub format: ImageFormat,
}

impl VpmemDevice {
    /// Checks the host path is absolute and exists.
    pub fn validate(&self) -> Result<()> {
        validate::existing_absolute_path("path", &self.path)
    }

    /// Checks this device against the controller it is added to, reading
    /// the image's metadata; returns the image's length in bytes.
    ///
    /// The rules every backend applies, in this order: the slot is below
    /// `max_devices` (argument `id`), the image is a regular file (argument
    /// `path`), and it is not longer than `max_size_bytes` (argument
    /// `path`). A backend adds its own rules after these (the kvm backend
    /// maps only non-empty images a multiple of 2 MiB long).
    ///
    /// # Errors
    /// `InvalidArgument` for a broken rule; `Io` if the metadata cannot be read.
    pub fn check_against(&self, controller: &VpmemController) -> Result<u64> {
        self.check_slot(controller)?;
        let len = validate::regular_file_len("path", &self.path)?;
        self.check_len(controller, len)?;
        Ok(len)
    }

    /// `InvalidArgument` (argument `id`) unless the slot is below `max_devices`.
    fn check_slot(&self, controller: &VpmemController) -> Result<()> {
        if self.id >= controller.max_devices {
            return Err(Error::invalid_argument(
                "id",
                format!(
                    "slot {} is not below the controller's max_devices {}",
                    self.id, controller.max_devices
                ),
            ));
        }
        Ok(())
    }

    /// `InvalidArgument` (argument `path`) if an image of `len` bytes is
    /// larger than the controller maps.
    fn check_len(&self, controller: &VpmemController, len: u64) -> Result<()> {
        if len > controller.max_size_bytes {
            return Err(Error::invalid_argument(
                "path",
                format!(
                    "{} is {len} bytes, more than the controller's max_size_bytes {}",
                    self.path.display(),
                    controller.max_size_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLLER: VpmemController = VpmemController {
        max_devices: 2,
        max_size_bytes: 1 << 20,
    };

    fn device(id: u32, path: PathBuf) -> VpmemDevice {
        VpmemDevice {
            id,
            path,
            read_only: true,
            format: ImageFormat::Raw,
        }
    }

    fn argument(result: Result<u64>) -> String {
        match result {
            Err(Error::InvalidArgument { argument, .. }) => argument,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_device_is_checked_against_its_controller() {
        let dir = std::env::temp_dir().join(format!("uvm-api-vpmem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.img");
        std::fs::write(&small, vec![0u8; 4096]).unwrap();
        let big = dir.join("big.img");
        std::fs::write(&big, vec![0u8; (1 << 20) + 1]).unwrap();

        assert_eq!(
            device(1, small.clone()).check_against(&CONTROLLER).unwrap(),
            4096
        );
        // The slot is checked before the image.
        assert_eq!(
            argument(device(2, dir.clone()).check_against(&CONTROLLER)),
            "id"
        );
        assert_eq!(
            argument(device(0, dir.clone()).check_against(&CONTROLLER)),
            "path"
        );
        match device(0, big).check_against(&CONTROLLER) {
            Err(Error::InvalidArgument { argument, reason }) => {
                assert_eq!(argument, "path");
                assert!(reason.contains("max_size_bytes"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_controller_needs_both_limits() {
        CONTROLLER.validate().unwrap();
        for bad in [
            VpmemController {
                max_devices: 0,
                ..CONTROLLER
            },
            VpmemController {
                max_size_bytes: 0,
                ..CONTROLLER
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidArgument { argument, .. }) if argument == "controller")
            );
        }
    }
}
