//! VM configuration and its validating builder.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::config_problem::ConfigProblem;
use crate::devices::{Nic, ScsiDisk, SharedFolder};
use crate::error::{Error, Result};
pub use crate::guest_os::GuestOs;
use crate::validate;
use crate::vpmem::{VpmemController, VpmemDevice};

/// Most virtual CPUs a configuration may ask for.
pub const MAX_VCPUS: u32 = 255;
/// Least guest memory a configuration may ask for, in MiB.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Most guest memory a configuration may ask for, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// Longest kernel command line accepted, in bytes (x86 Linux's limit).
pub const MAX_CMDLINE_LEN: usize = 2048;
/// Most SCSI controllers a VM can have.
pub const MAX_SCSI_CONTROLLERS: u8 = 4;
/// Most LUNs on one SCSI controller.
pub const MAX_LUNS_PER_CONTROLLER: u8 = 64;

/// Where the guest's serial console output goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleSink {
    /// Thrown away.
    #[default]
    Discard,
    /// Appended to a host file (absolute path), created if missing.
    File(PathBuf),
    /// Emitted line by line as `tracing` events with target `uvm::console`.
    Log,
}

/// Devices present from boot on. Each is added at `create` through the same
/// manager call a shim would use before `start` (cold plug).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BootDevices {
    /// Number of SCSI controllers (indices `0..scsi_controllers`).
    pub scsi_controllers: u8,
    /// Disks on those controllers.
    pub scsi_disks: Vec<ScsiDisk>,
    /// The VPMem controller, if any.
    pub vpmem: Option<VpmemController>,
    /// VPMem devices (need `vpmem`).
    pub vpmem_devices: Vec<VpmemDevice>,
    /// Network adapters.
    pub nics: Vec<Nic>,
    /// Shared folders.
    pub shares: Vec<SharedFolder>,
}

/// A complete, validated VM configuration. Build it with [`UvmConfig::builder`],
/// or deserialize it and call [`UvmConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UvmConfig {
    /// Identifier of the VM, used in logs and errors.
    pub id: String,
    /// Guest operating system.
    #[serde(default)]
    pub guest_os: GuestOs,
    /// Number of virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Kernel image to boot directly (Linux guests).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk (needs `kernel`).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (needs `kernel`).
    #[serde(default)]
    pub cmdline: String,
    /// Where the serial console goes.
    #[serde(default)]
    pub console: ConsoleSink,
    /// Devices present from boot on.
    #[serde(default)]
    pub devices: BootDevices,
}

/// Collects problems while validating.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Records an `InvalidArgument` from a shared validator under `field`.
    fn check(&mut self, field: impl Into<String>, result: Result<()>) {
        if let Err(e) = result {
            let reason = match e {
                Error::InvalidArgument { reason, .. } => reason,
                other => other.to_string(),
            };
            self.add(field, reason);
        }
    }
}

impl UvmConfig {
    /// Starts a builder for a VM with this id (1 vCPU, 256 MiB, Linux, no devices).
    pub fn builder(id: impl Into<String>) -> UvmConfigBuilder {
        UvmConfigBuilder {
            config: UvmConfig {
                id: id.into(),
                guest_os: GuestOs::Linux,
                vcpus: 1,
                memory_mib: 256,
                kernel: None,
                initrd: None,
                cmdline: String::new(),
                console: ConsoleSink::Discard,
                devices: BootDevices::default(),
            },
        }
    }

    /// Checks every field and returns [`Error::InvalidConfig`] listing each bad one.
    ///
    /// Host paths must be absolute here; whether they exist is checked by the
    /// backend when it uses them (a config may be built on another host).
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::default();
        p.check("id", validate::identifier("id", &self.id));
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            p.add(
                "vcpus",
                format!("{} is outside 1..={MAX_VCPUS}", self.vcpus),
            );
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            p.add(
                "memory_mib",
                format!(
                    "{} is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB}",
                    self.memory_mib
                ),
            );
        }
        self.validate_boot(&mut p);
        if let ConsoleSink::File(path) = &self.console {
            p.check("console", validate::absolute_path("console", path));
        }
        self.validate_devices(&mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidConfig { problems: p.0 })
        }
    }

    fn validate_boot(&self, p: &mut Problems) {
        if let Some(kernel) = &self.kernel {
            p.check("kernel", validate::absolute_path("kernel", kernel));
            if self.guest_os == GuestOs::Windows {
                p.add(
                    "kernel",
                    "Windows guests boot from their disk, not a kernel image",
                );
            }
        }
        if let Some(initrd) = &self.initrd {
            p.check("initrd", validate::absolute_path("initrd", initrd));
            if self.kernel.is_none() {
                p.add("initrd", "an initrd needs a kernel");
            }
        }
        if !self.cmdline.is_empty() && self.kernel.is_none() {
            p.add("cmdline", "a command line needs a kernel");
        }
        if self.cmdline.len() > MAX_CMDLINE_LEN {
            p.add(
                "cmdline",
                format!(
                    "{} bytes is longer than {MAX_CMDLINE_LEN}",
                    self.cmdline.len()
                ),
            );
        }
        if self.cmdline.contains('\0') {
            p.add("cmdline", "contains a NUL byte");
        }
    }

    fn validate_devices(&self, p: &mut Problems) {
        let d = &self.devices;
        if d.scsi_controllers > MAX_SCSI_CONTROLLERS {
            p.add(
                "devices.scsi_controllers",
                format!("{} is more than {MAX_SCSI_CONTROLLERS}", d.scsi_controllers),
            );
        }
        let mut luns = HashSet::new();
        for (i, disk) in d.scsi_disks.iter().enumerate() {
            let f = format!("devices.scsi_disks[{i}]");
            if disk.controller >= d.scsi_controllers {
                p.add(
                    format!("{f}.controller"),
                    format!("controller {} is not configured", disk.controller),
                );
            }
            if disk.lun >= MAX_LUNS_PER_CONTROLLER {
                p.add(
                    format!("{f}.lun"),
                    format!("{} is not below {MAX_LUNS_PER_CONTROLLER}", disk.lun),
                );
            }
            if !luns.insert((disk.controller, disk.lun)) {
                p.add(
                    format!("{f}.lun"),
                    format!("{} is used twice", disk.address()),
                );
            }
            p.check(
                format!("{f}.path"),
                validate::absolute_path("path", &disk.path),
            );
        }
        let mut slots = HashSet::new();
        for (i, dev) in d.vpmem_devices.iter().enumerate() {
            let f = format!("devices.vpmem_devices[{i}]");
            match d.vpmem {
                None => p.add(f.clone(), "a VPMem device needs devices.vpmem"),
                Some(c) if dev.id >= c.max_devices => p.add(
                    format!("{f}.id"),
                    format!("{} is not below max_devices {}", dev.id, c.max_devices),
                ),
                Some(_) => {}
            }
            if !slots.insert(dev.id) {
                p.add(format!("{f}.id"), format!("{} is used twice", dev.id));
            }
            p.check(
                format!("{f}.path"),
                validate::absolute_path("path", &dev.path),
            );
        }
        if let Some(c) = d.vpmem {
            p.check("devices.vpmem", c.validate());
        }
        let (mut ids, mut macs) = (HashSet::new(), HashSet::new());
        for (i, nic) in d.nics.iter().enumerate() {
            let f = format!("devices.nics[{i}]");
            p.check(format!("{f}.id"), validate::identifier("id", &nic.id));
            p.check(
                format!("{f}.endpoint"),
                validate::identifier("endpoint", &nic.endpoint),
            );
            if !ids.insert(&nic.id) {
                p.add(format!("{f}.id"), format!("{:?} is used twice", nic.id));
            }
            if !macs.insert(nic.mac) {
                p.add(format!("{f}.mac"), format!("{} is used twice", nic.mac));
            }
        }
        let mut names = HashSet::new();
        for (i, share) in d.shares.iter().enumerate() {
            let f = format!("devices.shares[{i}]");
            p.check(
                format!("{f}.name"),
                validate::identifier("name", &share.name),
            );
            p.check(
                format!("{f}.host_path"),
                validate::absolute_path("host_path", &share.host_path),
            );
            if !names.insert(&share.name) {
                p.add(
                    format!("{f}.name"),
                    format!("{:?} is used twice", share.name),
                );
            }
            for file in &share.allowed_files {
                p.check(
                    format!("{f}.allowed_files"),
                    validate::relative_file_name("allowed_files", file),
                );
            }
        }
    }
}

/// Builds a [`UvmConfig`]; [`UvmConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct UvmConfigBuilder {
    config: UvmConfig,
}

impl UvmConfigBuilder {
    /// Sets the guest operating system.
    pub fn guest_os(mut self, os: GuestOs) -> Self {
        self.config.guest_os = os;
        self
    }

    /// Sets the number of virtual CPUs.
    pub fn vcpus(mut self, vcpus: u32) -> Self {
        self.config.vcpus = vcpus;
        self
    }

    /// Sets guest memory in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.config.memory_mib = mib;
        self
    }

    /// Sets the kernel image to boot.
    pub fn kernel(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.kernel = Some(path.into());
        self
    }

    /// Sets the initial ramdisk.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.initrd = Some(path.into());
        self
    }

    /// Sets the kernel command line.
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.config.cmdline = cmdline.into();
        self
    }

    /// Sets where the serial console goes.
    pub fn console(mut self, sink: ConsoleSink) -> Self {
        self.config.console = sink;
        self
    }

    /// Sets the number of SCSI controllers present at boot.
    pub fn scsi_controllers(mut self, count: u8) -> Self {
        self.config.devices.scsi_controllers = count;
        self
    }

    /// Adds a SCSI disk present at boot.
    pub fn scsi_disk(mut self, disk: ScsiDisk) -> Self {
        self.config.devices.scsi_disks.push(disk);
        self
    }

    /// Sets the VPMem controller.
    pub fn vpmem_controller(mut self, controller: VpmemController) -> Self {
        self.config.devices.vpmem = Some(controller);
        self
    }

    /// Adds a VPMem device present at boot.
    pub fn vpmem_device(mut self, device: VpmemDevice) -> Self {
        self.config.devices.vpmem_devices.push(device);
        self
    }

    /// Adds a NIC present at boot.
    pub fn nic(mut self, nic: Nic) -> Self {
        self.config.devices.nics.push(nic);
        self
    }

    /// Adds a shared folder present at boot.
    pub fn share(mut self, share: SharedFolder) -> Self {
        self.config.devices.shares.push(share);
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<UvmConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{DiskFormat, ShareKind};
    use crate::vpmem::ImageFormat;

    fn problems(result: Result<UvmConfig>) -> Vec<String> {
        match result {
            Err(Error::InvalidConfig { problems }) => {
                problems.into_iter().map(|p| p.field).collect()
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    fn disk(controller: u8, lun: u8) -> ScsiDisk {
        ScsiDisk {
            controller,
            lun,
            path: "/img/disk.raw".into(),
            format: DiskFormat::Raw,
            read_only: false,
        }
    }

    #[test]
    fn defaults_build() {
        let c = UvmConfig::builder("vm1").build().unwrap();
        assert_eq!(
            (c.vcpus, c.memory_mib, c.guest_os),
            (1, 256, GuestOs::Linux)
        );
    }

    #[test]
    fn each_bad_scalar_field_is_named() {
        assert_eq!(problems(UvmConfig::builder("").build()), ["id"]);
        assert_eq!(problems(UvmConfig::builder("a b").build()), ["id"]);
        assert_eq!(
            problems(UvmConfig::builder("v").vcpus(0).build()),
            ["vcpus"]
        );
        assert_eq!(
            problems(UvmConfig::builder("v").vcpus(256).build()),
            ["vcpus"]
        );
        assert_eq!(
            problems(UvmConfig::builder("v").memory_mib(8).build()),
            ["memory_mib"]
        );
        assert_eq!(
            problems(
                UvmConfig::builder("v")
                    .memory_mib(MAX_MEMORY_MIB + 1)
                    .build()
            ),
            ["memory_mib"]
        );
        assert_eq!(
            problems(UvmConfig::builder("v").kernel("vmlinuz").build()),
            ["kernel"]
        );
        assert_eq!(
            problems(
                UvmConfig::builder("v")
                    .guest_os(GuestOs::Windows)
                    .kernel("/k")
                    .build()
            ),
            ["kernel"]
        );
        assert_eq!(
            problems(UvmConfig::builder("v").initrd("/i").build()),
            ["initrd"]
        );
        assert_eq!(
            problems(UvmConfig::builder("v").cmdline("quiet").build()),
            ["cmdline"]
        );
        assert_eq!(
            problems(
                UvmConfig::builder("v")
                    .kernel("/k")
                    .cmdline("x".repeat(2049))
                    .build()
            ),
            ["cmdline"]
        );
        assert_eq!(
            problems(
                UvmConfig::builder("v")
                    .console(ConsoleSink::File("log".into()))
                    .build()
            ),
            ["console"]
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let fields = problems(UvmConfig::builder("").vcpus(0).memory_mib(0).build());
        assert_eq!(fields, ["id", "vcpus", "memory_mib"]);
        let err = UvmConfig::builder("").vcpus(0).build().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("id: must not be empty") && msg.contains("vcpus: 0 is outside"),
            "{msg}"
        );
    }

    #[test]
    fn bad_boot_devices_are_named() {
        let fields = problems(
            UvmConfig::builder("v")
                .scsi_controllers(5)
                .scsi_disk(disk(0, 0))
                .scsi_disk(disk(0, 0))
                .scsi_disk(disk(0, 64))
                .build(),
        );
        assert_eq!(
            fields,
            [
                "devices.scsi_controllers",
                "devices.scsi_disks[1].lun",
                "devices.scsi_disks[2].lun"
            ]
        );
        let fields = problems(UvmConfig::builder("v").scsi_disk(disk(1, 0)).build());
        assert_eq!(fields, ["devices.scsi_disks[0].controller"]);
        let mut rel = disk(0, 1);
        rel.path = "disk.raw".into();
        let fields = problems(
            UvmConfig::builder("v")
                .scsi_controllers(1)
                .scsi_disk(rel)
                .build(),
        );
        assert_eq!(fields, ["devices.scsi_disks[0].path"]);
    }

    #[test]
    fn bad_vpmem_nics_and_shares_are_named() {
        let dev = VpmemDevice {
            id: 2,
            path: "/img/layer.vhd".into(),
            read_only: true,
            format: ImageFormat::Vhd1,
        };
        assert_eq!(
            problems(UvmConfig::builder("v").vpmem_device(dev.clone()).build()),
            ["devices.vpmem_devices[0]"]
        );
        let ctl = VpmemController {
            max_devices: 2,
            max_size_bytes: 1 << 30,
        };
        assert_eq!(
            problems(
                UvmConfig::builder("v")
                    .vpmem_controller(ctl)
                    .vpmem_device(dev)
                    .build()
            ),
            ["devices.vpmem_devices[0].id"]
        );
        let nic = |id: &str, mac: &str| Nic {
            id: id.into(),
            endpoint: "tap0".into(),
            mac: mac.parse().unwrap(),
        };
        assert_eq!(
            problems(
                UvmConfig::builder("v")
                    .nic(nic("eth0", "02:00:00:00:00:01"))
                    .nic(nic("eth0", "02:00:00:00:00:01"))
                    .build()
            ),
            ["devices.nics[1].id", "devices.nics[1].mac"]
        );
        let share = SharedFolder {
            kind: ShareKind::VirtioFs,
            name: String::new(),
            host_path: "rel".into(),
            read_only: false,
            allowed_files: vec!["/abs".into()],
        };
        assert_eq!(
            problems(UvmConfig::builder("v").share(share).build()),
            [
                "devices.shares[0].name",
                "devices.shares[0].host_path",
                "devices.shares[0].allowed_files"
            ]
        );
    }

    #[test]
    fn guest_os_parses_and_refuses_unknown_names() {
        assert_eq!("Linux".parse::<GuestOs>().unwrap(), GuestOs::Linux);
        assert!(
            matches!("plan9".parse::<GuestOs>(), Err(Error::UnknownGuestOs { name }) if name == "plan9")
        );
    }

    #[test]
    fn config_round_trips_through_json_and_toml() {
        let c = UvmConfig::builder("vm-7")
            .vcpus(2)
            .kernel("/boot/vmlinuz")
            .cmdline("console=ttyS0")
            .scsi_controllers(1)
            .scsi_disk(disk(0, 3))
            .nic(Nic {
                id: "eth0".into(),
                endpoint: "tap0".into(),
                mac: "02:00:00:00:00:07".parse().unwrap(),
            })
            .build()
            .unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<UvmConfig>(&json).unwrap(), c);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<UvmConfig>(&text).unwrap(), c);
        let minimal: UvmConfig =
            toml::from_str("id = \"m\"\nvcpus = 1\nmemory_mib = 64\n").unwrap();
        minimal.validate().unwrap();
    }
}
