//! One run's device: what to add (fresh names, LUN, MAC, size or tag per
//! run, so nothing is reused early) and its host files, kept in a
//! [`Workspace`] that goes away with the benchmark.

use std::path::{Path, PathBuf};

use uvm_api::MacAddress;

use super::kind::{Kind, Mark};
use crate::error::{BenchError, Result};

/// Size of each SCSI disk image.
pub const DISK_BYTES: u64 = 8 << 20;
/// Granularity of pmem image sizes (backend-kvm's requirement).
pub const PMEM_STEP: u64 = 2 << 20;
/// The most runs per kind: pmem sizes `run * PMEM_STEP` must stay distinct
/// and below the pmem controller's limit, LUNs below 64.
pub const MAX_RUNS: usize = 32;
/// The largest pmem image a run uses.
pub const PMEM_MAX_BYTES: u64 = MAX_RUNS as u64 * PMEM_STEP;
/// The file every share holds.
pub const SHARE_FILE: &str = "hello.txt";

/// How one VMM names its devices, so that two VMMs in the same host never
/// share a tap name or MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// Prefix of NIC ids, taps (`uvm<prefix><run>`) and share tags.
    pub prefix: &'static str,
    /// Second octet of the MACs.
    pub mac_octet: u8,
}

impl Names {
    /// backend-kvm's names (`uvmhb1`, `02:6b:...`).
    pub const KVM: Names = Names {
        prefix: "hb",
        mac_octet: 0x6b,
    };
    /// QEMU's names (`uvmqb1`, `02:71:...`).
    pub const QEMU: Names = Names {
        prefix: "qb",
        mac_octet: 0x71,
    };
}

/// What is added in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A raw disk at LUN `lun` of controller 0.
    Scsi {
        /// The LUN.
        lun: u8,
        /// The raw image.
        image: PathBuf,
    },
    /// A NIC on a tap the VMM creates.
    Nic {
        /// The NIC's id.
        id: String,
        /// The tap's name.
        tap: String,
        /// Its MAC.
        mac: MacAddress,
    },
    /// A pmem device.
    Pmem {
        /// Its slot.
        slot: u32,
        /// The raw image.
        image: PathBuf,
        /// The image's size.
        size: u64,
    },
    /// A virtio-fs share.
    Share {
        /// Its tag.
        tag: String,
        /// The shared directory (holds [`SHARE_FILE`]).
        dir: PathBuf,
    },
}

/// One run's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Run number, from 1.
    pub run: usize,
    /// What to add.
    pub spec: Spec,
}

impl Device {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self.spec {
            Spec::Scsi { .. } => Kind::Scsi,
            Spec::Nic { .. } => Kind::Nic,
            Spec::Pmem { .. } => Kind::Pmem,
            Spec::Share { .. } => Kind::Share,
        }
    }

    /// How the guest shows it.
    pub fn mark(&self) -> Mark {
        match &self.spec {
            Spec::Scsi { lun, .. } => Mark::ScsiLun(0, *lun),
            Spec::Nic { mac, .. } => Mark::Mac(*mac),
            Spec::Pmem { size, .. } => Mark::PmemSize(*size),
            Spec::Share { tag, .. } => Mark::Tag(tag.clone()),
        }
    }
}

/// The MAC of run `run` with `names`: locally administered, unicast.
pub fn mac(names: Names, run: usize) -> Result<MacAddress> {
    let [.., hi, lo] = (run as u64).to_be_bytes();
    MacAddress::new([0x02, names.mac_octet, 0x68, 0x62, hi, lo])
        .map_err(BenchError::uvm(format!("MAC of run {run}")))
}

/// The pmem image size of run `run` (distinct per run up to [`MAX_RUNS`]).
pub fn pmem_size(run: usize) -> u64 {
    ((run.saturating_sub(1) % MAX_RUNS) as u64 + 1) * PMEM_STEP
}

/// A temporary directory with the devices' host files.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

fn sized_file(path: &Path, len: u64) -> Result<()> {
    let file = std::fs::File::create(path)
        .map_err(BenchError::io(format!("create {}", path.display())))?;
    file.set_len(len)
        .map_err(BenchError::io(format!("resize {}", path.display())))
}

impl Workspace {
    /// A fresh directory under the system's temporary directory.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hotplug-bench-")
            .tempdir()
            .map_err(BenchError::io("create a temporary directory"))?;
        Ok(Workspace { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates run `run`'s device of `kind` (and its files) with `names`.
    pub fn device(&self, kind: Kind, run: usize, names: Names) -> Result<Device> {
        if run == 0 || run > MAX_RUNS {
            return Err(BenchError::Usage(format!(
                "run {run} is not in 1..={MAX_RUNS}"
            )));
        }
        let base = format!("{}{run}", names.prefix);
        let spec = match kind {
            Kind::Scsi => {
                let image = self.path().join(format!("{base}-disk.raw"));
                sized_file(&image, DISK_BYTES)?;
                Spec::Scsi {
                    lun: u8::try_from(run - 1).unwrap_or(u8::MAX),
                    image,
                }
            }
            Kind::Nic => Spec::Nic {
                id: format!("nic{base}"),
                tap: format!("uvm{base}"),
                mac: mac(names, run)?,
            },
            Kind::Pmem => {
                let size = pmem_size(run);
                let image = self.path().join(format!("{base}-pmem.raw"));
                sized_file(&image, size)?;
                Spec::Pmem {
                    slot: u32::try_from(run - 1).unwrap_or(u32::MAX),
                    image,
                    size,
                }
            }
            Kind::Share => {
                let dir = self.path().join(format!("{base}-share"));
                std::fs::create_dir_all(&dir)
                    .map_err(BenchError::io(format!("create {}", dir.display())))?;
                let file = dir.join(SHARE_FILE);
                std::fs::write(&file, format!("share of run {run}\n"))
                    .map_err(BenchError::io(format!("write {}", file.display())))?;
                Spec::Share { tag: base, dir }
            }
        };
        Ok(Device { run, spec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_get_fresh_names_and_files() {
        let ws = Workspace::new().unwrap();
        let scsi = ws.device(Kind::Scsi, 3, Names::KVM).unwrap();
        assert_eq!(scsi.mark(), Mark::ScsiLun(0, 2));
        let Spec::Scsi { image, .. } = &scsi.spec else {
            panic!("{scsi:?}")
        };
        assert_eq!(std::fs::metadata(image).unwrap().len(), DISK_BYTES);

        let nic = ws.device(Kind::Nic, 2, Names::QEMU).unwrap();
        let Spec::Nic { id, tap, mac } = &nic.spec else {
            panic!("{nic:?}")
        };
        assert_eq!((id.as_str(), tap.as_str()), ("nicqb2", "uvmqb2"));
        assert_eq!(mac.to_string(), "02:71:68:62:00:02");
        assert!(mac.is_local());

        let pmem = ws.device(Kind::Pmem, 2, Names::KVM).unwrap();
        assert_eq!(pmem.mark(), Mark::PmemSize(4 << 20));
        assert_eq!(pmem_size(MAX_RUNS), PMEM_MAX_BYTES);

        let share = ws.device(Kind::Share, 1, Names::KVM).unwrap();
        assert_eq!(share.mark(), Mark::Tag("hb1".into()));
        assert_eq!(share.kind(), Kind::Share);
        let Spec::Share { dir, .. } = &share.spec else {
            panic!("{share:?}")
        };
        assert!(dir.join(SHARE_FILE).is_file());
        assert!(ws.device(Kind::Scsi, 0, Names::KVM).is_err());
        assert!(ws.device(Kind::Scsi, MAX_RUNS + 1, Names::KVM).is_err());
    }
}
