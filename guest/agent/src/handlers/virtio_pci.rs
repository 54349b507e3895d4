//! virtio-pci devices seen through sysfs: which PCI function a virtio
//! device is, where its device-specific configuration lives (the virtio
//! vendor capabilities in PCI config space) and reading that
//! configuration straight from its memory BAR.
//!
//! Used where the kernel does not export what the host needs (the
//! virtio-fs tag, before `/sys/fs/virtiofs` existed).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use super::pci_function;

/// The virtio device id of virtio-fs.
pub const VIRTIO_ID_FS: u16 = 26;

/// How much PCI config space is read (the type 0 header and the legacy
/// capabilities area; only root can read past the first 64 bytes).
pub const CONFIG_LEN: usize = 256;
/// Offset of the status register in PCI config space.
const PCI_STATUS: usize = 0x06;
/// Status bit: the device has a capabilities list.
const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// Offset of the capabilities pointer in PCI config space.
const PCI_CAPABILITY_LIST: usize = 0x34;
/// The lowest offset a capability may have (the end of the header).
const FIRST_CAP_OFFSET: usize = 0x40;
/// Most capabilities walked before the list is taken for a loop (as many
/// 4-byte capabilities as fit in 256 bytes past the header).
pub const MAX_CAPS: usize = 48;
/// PCI capability id of vendor-specific (virtio) capabilities.
const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Size of `struct virtio_pci_cap`.
const VIRTIO_PCI_CAP_LEN: usize = 16;
/// `cfg_type` of the device-specific configuration.
const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// Number of standard BARs; virtio capabilities naming others are ignored.
const PCI_STD_NUM_BARS: u8 = 6;

/// Why a virtio-pci device's configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    /// Reading or opening a sysfs file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Less than [`CONFIG_LEN`] bytes of config space could be read.
    #[error("only {0} bytes of PCI config space are readable (all 256 need root)")]
    ShortConfig(usize),
    /// The status register says there is no capabilities list.
    #[error("the PCI function has no capabilities list")]
    NoCapabilities,
    /// A capability pointer is inside the header or not 4-aligned.
    #[error("bad PCI capability pointer {0:#x}")]
    BadPointer(usize),
    /// The capabilities list did not end within [`MAX_CAPS`] entries.
    #[error("the PCI capabilities list loops (over {MAX_CAPS} entries)")]
    CapabilityLoop,
    /// No usable virtio device configuration capability.
    #[error("no virtio device configuration capability")]
    NoDeviceCfg,
    /// The device configuration is shorter than what was asked for.
    #[error("the device configuration is {have} bytes, {want} are needed")]
    DeviceCfgTooShort {
        /// Its length per the capability.
        have: u32,
        /// The bytes asked for.
        want: usize,
    },
    /// The device configuration lies (partly) past the end of its BAR.
    #[error("{}: bytes {start:#x}..{end:#x} are past its end ({size:#x})", .path.display())]
    OutOfRange {
        /// The `resourceN` file.
        path: PathBuf,
        /// First byte wanted.
        start: u64,
        /// One past the last byte wanted.
        end: u64,
        /// Size of the BAR (the file).
        size: u64,
    },
    /// mmap(2) of the BAR failed.
    #[error("mmap {}: {source}{}", .path.display(), strict_devmem_hint(.source))]
    Map {
        /// The `resourceN` file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Explains the usual cause of `EINVAL` from mmap of a `resourceN` file.
fn strict_devmem_hint(error: &io::Error) -> &'static str {
    if error.raw_os_error() == Some(libc::EINVAL) {
        " (a BAR claimed by a driver cannot be mapped on a CONFIG_IO_STRICT_DEVMEM \
         kernel unless it is booted with iomem=relaxed)"
    } else {
        ""
    }
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> VirtioPciError {
    move |source| VirtioPciError::Io { context, source }
}

/// A virtio device on a PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioPciDevice {
    /// The virtio device name (`virtioN`).
    pub name: String,
    /// The PCI function's sysfs directory (inside the root).
    pub pci_dir: PathBuf,
}

/// The virtio devices of `<root>/sys/bus/virtio/devices` with virtio
/// device id `device_id` that sit on a PCI function (virtio-mmio ones are
/// left out), sorted by name; none when the directory is missing.
pub fn devices(root: &Path, device_id: u16) -> Result<Vec<VirtioPciDevice>, VirtioPciError> {
    let dir = root.join("sys/bus/virtio/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("read_dir {}", dir.display()))(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(format!("read_dir {}", dir.display())))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // A device being removed can lose its files under us: skip it.
        if read_device_id(&entry.path()) != Some(device_id) {
            continue;
        }
        if let Some(pci_dir) = pci_parent(root, &entry.path()) {
            found.push(VirtioPciDevice { name, pci_dir });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The virtio device id in `<dir>/device` (`0x001a`).
fn read_device_id(dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join("device")).ok()?;
    let text = text.trim();
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    u16::from_str_radix(hex, 16).ok()
}

/// The PCI function directory a `/sys/bus/virtio/devices` entry's link
/// points into: the parent of the link target, when that is named like a
/// PCI function.
fn pci_parent(root: &Path, link: &Path) -> Option<PathBuf> {
    let target = resolve_link(root, link)?;
    let parent = target.parent()?;
    let name = parent.file_name()?.to_str()?;
    let function = pci_function(Path::new(name))?;
    (function == name).then(|| parent.to_path_buf())
}

/// Resolves the symbolic link `link` (a path inside `root`) without
/// leaving `root`: a relative target is applied to the link's directory
/// lexically (`..` drops a component and may not climb above `root`), an
/// absolute one is taken as relative to `root`. Only `link` itself is
/// resolved (sysfs device links point at real directories).
pub fn resolve_link(root: &Path, link: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(link).ok()?;
    let base = if target.is_absolute() {
        Path::new("")
    } else {
        link.parent()?.strip_prefix(root).ok()?
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in base.components().chain(target.components()) {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(
        parts
            .iter()
            .fold(root.to_path_buf(), |path, part| path.join(part)),
    )
}

/// Where a virtio device-specific configuration is (`struct
/// virtio_pci_cap` of `cfg_type` 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCfg {
    /// The BAR holding it.
    pub bar: u8,
    /// Its offset in the BAR.
    pub offset: u32,
    /// Its length.
    pub length: u32,
}

/// Finds the first virtio device configuration capability (naming a
/// standard BAR) in the first [`CONFIG_LEN`] bytes of a PCI config space.
/// The capability walk refuses pointers into the header or unaligned ones
/// and gives up after [`MAX_CAPS`] entries.
pub fn find_device_cfg(config: &[u8]) -> Result<DeviceCfg, VirtioPciError> {
    let config = config
        .get(..CONFIG_LEN)
        .ok_or(VirtioPciError::ShortConfig(config.len()))?;
    let status = u16::from_le_bytes([config[PCI_STATUS], config[PCI_STATUS + 1]]);
    if status & PCI_STATUS_CAP_LIST == 0 {
        return Err(VirtioPciError::NoCapabilities);
    }
    let mut next = config[PCI_CAPABILITY_LIST];
    for _ in 0..MAX_CAPS {
        let at = usize::from(next);
        if at == 0 {
            return Err(VirtioPciError::NoDeviceCfg);
        }
        if at < FIRST_CAP_OFFSET || at % 4 != 0 {
            return Err(VirtioPciError::BadPointer(at));
        }
        if let Some(found) = device_cfg_at(config, at) {
            return Ok(found);
        }
        next = config[at + 1];
    }
    Err(VirtioPciError::CapabilityLoop)
}

/// The capability at `at` if it is a well-formed virtio device
/// configuration capability naming a standard BAR.
fn device_cfg_at(config: &[u8], at: usize) -> Option<DeviceCfg> {
    let cap = config.get(at..at + VIRTIO_PCI_CAP_LEN)?;
    let le32 = |i: usize| u32::from_le_bytes([cap[i], cap[i + 1], cap[i + 2], cap[i + 3]]);
    let (id, cap_len, cfg_type, bar) = (cap[0], usize::from(cap[2]), cap[3], cap[4]);
    let wanted = id == PCI_CAP_ID_VNDR
        && cap_len >= VIRTIO_PCI_CAP_LEN
        && cfg_type == VIRTIO_PCI_CAP_DEVICE_CFG
        && bar < PCI_STD_NUM_BARS;
    wanted.then(|| DeviceCfg {
        bar,
        offset: le32(8),
        length: le32(12),
    })
}

/// Reads the first [`CONFIG_LEN`] bytes of `<pci_dir>/config`.
pub fn read_config(pci_dir: &Path) -> Result<Vec<u8>, VirtioPciError> {
    let path = pci_dir.join("config");
    let file = File::open(&path).map_err(io_error(format!("open {}", path.display())))?;
    let mut config = Vec::with_capacity(CONFIG_LEN);
    file.take(CONFIG_LEN as u64)
        .read_to_end(&mut config)
        .map_err(io_error(format!("read {}", path.display())))?;
    Ok(config)
}

/// Reads the first `len` bytes of the device-specific configuration of the
/// virtio device on `pci_dir`, from the memory BAR its capability names.
pub fn read_device_cfg(pci_dir: &Path, len: usize) -> Result<Vec<u8>, VirtioPciError> {
    let cfg = find_device_cfg(&read_config(pci_dir)?)?;
    if u64::from(cfg.length) < len as u64 {
        return Err(VirtioPciError::DeviceCfgTooShort {
            have: cfg.length,
            want: len,
        });
    }
    let path = pci_dir.join(format!("resource{}", cfg.bar));
    read_resource(&path, u64::from(cfg.offset), len)
}

/// Copies `len` bytes at `offset` of the memory BAR file `path` (a sysfs
/// `resourceN`, which only supports mmap) through a read-only shared
/// mapping of the pages holding them, one volatile byte read at a time.
pub fn read_resource(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, VirtioPciError> {
    let file = File::open(path).map_err(io_error(format!("open {}", path.display())))?;
    let size = file
        .metadata()
        .map_err(io_error(format!("stat {}", path.display())))?
        .len();
    let end = offset.saturating_add(len as u64);
    if end > size {
        return Err(VirtioPciError::OutOfRange {
            path: path.to_path_buf(),
            start: offset,
            end,
            size,
        });
    }
    let map_error = |source| VirtioPciError::Map {
        path: path.to_path_buf(),
        source,
    };
    let start = offset - offset % page_size();
    let mapping = Mapping::new(&file, start, end - start).map_err(map_error)?;
    let skip = usize::try_from(offset - start)
        .map_err(|_| map_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
    Ok(mapping.copy(skip, len))
}

/// The system page size (4 KiB if it cannot be had).
fn page_size() -> u64 {
    // SAFETY: sysconf(3) only reads its integer argument.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// A read-only shared mapping, unmapped on drop.
struct Mapping {
    base: *const u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `file` at the page-aligned `offset`.
    fn new(file: &File, offset: u64, len: u64) -> io::Result<Self> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        let offset = libc::off_t::try_from(offset).map_err(|_| invalid())?;
        let len = usize::try_from(len).map_err(|_| invalid())?;
        // SAFETY: a fresh read-only mapping chosen by the kernel (no
        // address hint, no MAP_FIXED) aliases no Rust object; the fd is
        // owned by `file`, alive for the call; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: base.cast_const().cast(),
            len,
        })
    }

    /// Copies `len` bytes from `skip` on, one volatile byte read each (the
    /// mapping may be device memory, where every access is an I/O).
    fn copy(&self, skip: usize, len: usize) -> Vec<u8> {
        (skip..skip.saturating_add(len))
            .take_while(|&i| i < self.len)
            .map(|i| {
                // SAFETY: `i < self.len`, so the byte is inside the live
                // mapping, which covers only file bytes (checked against
                // the file size before mapping) and is readable.
                unsafe { std::ptr::read_volatile(self.base.add(i)) }
            })
            .collect()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned and nothing
        // borrows the mapping past `self`.
        unsafe {
            libc::munmap(self.base.cast_mut().cast(), self.len);
        }
    }
}

/// Builders of fake virtio-pci sysfs trees for tests.
#[cfg(test)]
pub mod fake {
    use std::fs;
    use std::path::Path;

    /// One fake vendor capability: (offset, next, cfg_type, bar, cfg
    /// offset, cfg length).
    pub type Cap = (u8, u8, u8, u8, u32, u32);

    /// A 256-byte config space with the capabilities list bit set, the
    /// list starting at the first capability's offset.
    pub fn config(caps: &[Cap]) -> Vec<u8> {
        let mut config = vec![0u8; super::CONFIG_LEN];
        config[0..4].copy_from_slice(&[0xf4, 0x1a, 0x5a, 0x10]);
        config[super::PCI_STATUS] = 0x10;
        config[super::PCI_CAPABILITY_LIST] = caps.first().map_or(0, |c| c.0);
        for &(at, next, cfg_type, bar, offset, length) in caps {
            let at = usize::from(at);
            let mut cap = vec![super::PCI_CAP_ID_VNDR, next, 16, cfg_type, bar, 0, 0, 0];
            cap.extend_from_slice(&offset.to_le_bytes());
            cap.extend_from_slice(&length.to_le_bytes());
            config[at..at + cap.len()].copy_from_slice(&cap);
        }
        config
    }

    /// The usual capabilities: common (BAR 0 @ 0), notify, ISR and the
    /// device configuration at BAR 0 offset 0x2000, 0x1000 bytes.
    pub fn virtio_caps() -> Vec<Cap> {
        vec![
            (0x40, 0x50, 1, 0, 0, 0x38),
            (0x50, 0x64, 2, 0, 0x3000, 0x1000),
            (0x64, 0x74, 3, 0, 0x1000, 1),
            (0x74, 0, 4, 0, 0x2000, 0x1000),
        ]
    }

    /// Adds `virtio{index}` with device id `device_id` on PCI function
    /// `0000:00:{slot}.0` (linked from `sys/bus/virtio/devices` the way
    /// sysfs does), with config space `config` and a 32 KiB `resource0`
    /// holding `device_cfg` at 0x2000. Returns the PCI directory.
    pub fn add_device(
        root: &Path,
        slot: u8,
        index: u32,
        device_id: u16,
        config: &[u8],
        device_cfg: &[u8],
    ) -> std::path::PathBuf {
        let pci = format!("devices/pci0000:00/0000:00:{slot:02x}.0");
        let pci_dir = root.join("sys").join(&pci);
        let virtio = pci_dir.join(format!("virtio{index}"));
        fs::create_dir_all(&virtio).unwrap();
        fs::write(virtio.join("device"), format!("0x{device_id:04x}\n")).unwrap();
        fs::write(pci_dir.join("config"), config).unwrap();
        let mut bar = vec![0u8; 0x8000];
        bar[0x2000..0x2000 + device_cfg.len()].copy_from_slice(device_cfg);
        fs::write(pci_dir.join("resource0"), bar).unwrap();
        let links = root.join("sys/bus/virtio/devices");
        fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../{pci}/virtio{index}"),
            links.join(format!("virtio{index}")),
        )
        .unwrap();
        pci_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_the_device_cfg_capability() {
        let config = fake::config(&fake::virtio_caps());
        let found = find_device_cfg(&config).unwrap();
        assert_eq!(
            found,
            DeviceCfg {
                bar: 0,
                offset: 0x2000,
                length: 0x1000
            }
        );
    }

    #[test]
    fn skips_caps_naming_reserved_bars_and_other_ids() {
        let mut config =
            fake::config(&[(0x40, 0x50, 4, 7, 0x100, 0x100), (0x50, 0, 4, 2, 0x80, 64)]);
        assert_eq!(find_device_cfg(&config).unwrap().bar, 2);
        config[0x50] = 0x11; // MSI-X, not vendor-specific
        assert!(matches!(
            find_device_cfg(&config),
            Err(VirtioPciError::NoDeviceCfg)
        ));
    }

    #[test]
    fn bad_capability_lists_are_refused() {
        let looping = fake::config(&[(0x40, 0x50, 1, 0, 0, 0x38), (0x50, 0x40, 3, 0, 0, 1)]);
        assert!(matches!(
            find_device_cfg(&looping),
            Err(VirtioPciError::CapabilityLoop)
        ));
        let mut config = fake::config(&fake::virtio_caps());
        config[0x41] = 0x52;
        assert!(matches!(
            find_device_cfg(&config),
            Err(VirtioPciError::BadPointer(0x52))
        ));
        config[0x41] = 0x10;
        assert!(matches!(
            find_device_cfg(&config),
            Err(VirtioPciError::BadPointer(0x10))
        ));
        config[PCI_STATUS] = 0;
        assert!(matches!(
            find_device_cfg(&config),
            Err(VirtioPciError::NoCapabilities)
        ));
        assert!(matches!(
            find_device_cfg(&config[..64]),
            Err(VirtioPciError::ShortConfig(64))
        ));
        // A capability at the very end cannot hold a virtio_pci_cap.
        let mut config = fake::config(&[]);
        config[PCI_CAPABILITY_LIST] = 0xfc;
        config[0xfc] = PCI_CAP_ID_VNDR;
        assert!(matches!(
            find_device_cfg(&config),
            Err(VirtioPciError::NoDeviceCfg)
        ));
    }

    #[test]
    fn lists_pci_devices_by_id() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let config = fake::config(&fake::virtio_caps());
        let fs_dir = fake::add_device(r, 6, 3, VIRTIO_ID_FS, &config, b"x");
        fake::add_device(r, 3, 0, 1, &config, b"");
        // A virtio-mmio device: not on a PCI function.
        let mmio = r.join("sys/devices/platform/virtio-mmio.0/virtio1");
        fs::create_dir_all(&mmio).unwrap();
        fs::write(mmio.join("device"), "0x001a\n").unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/platform/virtio-mmio.0/virtio1",
            r.join("sys/bus/virtio/devices/virtio1"),
        )
        .unwrap();
        let found = devices(r, VIRTIO_ID_FS).unwrap();
        assert_eq!(
            found,
            vec![VirtioPciDevice {
                name: "virtio3".into(),
                pci_dir: fs_dir
            }]
        );
        assert!(
            devices(&r.join("nowhere"), VIRTIO_ID_FS)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let dir = r.join("sys/bus/virtio/devices");
        fs::create_dir_all(&dir).unwrap();
        let link = |name: &str, target: &str| {
            std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
            dir.join(name)
        };
        let relative = link("a", "../../../devices/pci0000:00/0000:00:06.0/virtio3");
        assert_eq!(
            resolve_link(r, &relative).unwrap(),
            r.join("sys/devices/pci0000:00/0000:00:06.0/virtio3")
        );
        let absolute = link("b", "/sys/devices/x/virtio4");
        assert_eq!(
            resolve_link(r, &absolute).unwrap(),
            r.join("sys/devices/x/virtio4")
        );
        let escaping = link("c", "../../../../../etc/virtio5");
        assert_eq!(resolve_link(r, &escaping), None);
        assert_eq!(resolve_link(r, &dir), None);
    }

    #[test]
    fn reads_the_device_cfg_through_mmap() {
        let root = tempfile::tempdir().unwrap();
        let config = fake::config(&fake::virtio_caps());
        let pci = fake::add_device(root.path(), 6, 3, VIRTIO_ID_FS, &config, b"hello");
        assert_eq!(read_device_cfg(&pci, 8).unwrap(), b"hello\0\0\0");
        // Across a page boundary.
        let bar = pci.join("resource0");
        let mut data = vec![0u8; 0x8000];
        data[0xffe..0x1002].copy_from_slice(b"abcd");
        fs::write(&bar, &data).unwrap();
        assert_eq!(read_resource(&bar, 0xffe, 4).unwrap(), b"abcd");
        assert!(matches!(
            read_device_cfg(&pci, 0x1001),
            Err(VirtioPciError::DeviceCfgTooShort { .. })
        ));
    }

    #[test]
    fn a_window_past_the_bar_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let caps = [(0x40, 0, 4, 0, 0x7ff0, 0x1000)];
        let pci = fake::add_device(root.path(), 6, 3, VIRTIO_ID_FS, &fake::config(&caps), b"");
        let error = read_device_cfg(&pci, 40).unwrap_err();
        assert!(
            matches!(
                error,
                VirtioPciError::OutOfRange {
                    start: 0x7ff0,
                    end: 0x8018,
                    size: 0x8000,
                    ..
                }
            ),
            "{error}"
        );
        let error = read_resource(&pci.join("resource0"), u64::MAX - 2, 40).unwrap_err();
        assert!(
            matches!(error, VirtioPciError::OutOfRange { .. }),
            "{error}"
        );
    }

    #[test]
    fn einval_from_mmap_names_iomem_relaxed() {
        let error = VirtioPciError::Map {
            path: PathBuf::from("/sys/x/resource0"),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(error.to_string().contains("iomem=relaxed"), "{error}");
        let error = VirtioPciError::Map {
            path: PathBuf::from("/sys/x/resource0"),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(!error.to_string().contains("iomem"), "{error}");
    }
}
