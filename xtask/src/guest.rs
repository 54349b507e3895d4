//! `cargo xtask guest`: the test guest's kernel and initramfs, built from
//! Debian packages and cached by package versions.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Result, XtaskError};
use crate::{apt, build, cache, cmd, initramfs, vmlinux};

/// The kernel metapackage the guest kernel comes from.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
/// The busybox package.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The guest's `/init` template (`guest/init.sh`).
pub const INIT: &str = include_str!("../../guest/init.sh");
/// The guest's module list (`guest/modules.txt`).
pub const MODULES: &str = include_str!("../../guest/modules.txt");
/// The power-button handler busybox `acpid` runs on KEY_POWER
/// (`guest/acpi/power-button.sh`, installed as [`POWER_BUTTON_HANDLER`]).
pub const POWER_BUTTON: &str = include_str!("../../guest/acpi/power-button.sh");
/// Where acpid looks for the power-button action (`<confdir>/PWRF/00000080`).
pub const POWER_BUTTON_HANDLER: &str = "etc/acpi/PWRF/00000080";
/// The agent's vsock port, substituted into `/init`.
pub const AGENT_PORT: u32 = 1024;
/// The kernel command line the guest is meant to boot with (a VMM adds
/// `tsc_early_khz=<host kHz>` under TCG). `iomem=relaxed` lets the agent
/// map a virtio-fs device's configuration through sysfs to read its tag
/// (the 6.1 kernel has no `/sys/fs/virtiofs`; its `IO_STRICT_DEVMEM`
/// refuses mappings of BARs a driver has claimed).
pub const CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 iomem=relaxed";
/// Version of the `assets.json` layout.
pub const SCHEMA: u32 = 1;

const HINT: &str = "the guest is built from Debian bookworm packages; check that \
    /etc/apt/sources.list(.d) has Debian main (bookworm) and that `apt-get update` works";

/// What `cargo xtask guest` produced; written as `assets.json` in the cache
/// directory (its path is what later code reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assets {
    /// Layout version of this file.
    pub schema: u32,
    /// The cache directory holding everything below.
    pub dir: PathBuf,
    /// The concrete kernel package (e.g. `linux-image-6.1.0-48-cloud-amd64`).
    pub kernel_package: String,
    /// Its version (e.g. `6.1.172-1`).
    pub kernel_version: String,
    /// The kernel release (`uname -r`, the modules directory name).
    pub kernel_release: String,
    /// The busybox-static version.
    pub busybox_version: String,
    /// The bzImage (LZ4-compressed payload).
    pub bzimage: PathBuf,
    /// The ELF vmlinux extracted from it (has a PVH entry note).
    pub vmlinux: Option<PathBuf>,
    /// The initramfs (uncompressed newc cpio).
    pub initramfs: PathBuf,
    /// The modules in the initramfs, in load order.
    pub modules: Vec<String>,
    /// The static busybox binary.
    pub busybox: PathBuf,
    /// The kernel's extracted `lib/modules/<release>` (for the lab).
    pub modules_dir: PathBuf,
    /// The static agent binary in the initramfs.
    pub agent: PathBuf,
    /// The agent's vsock port.
    pub agent_port: u32,
    /// The suggested kernel command line (without `tsc_early_khz`).
    pub cmdline: String,
    /// Fingerprint of the initramfs inputs (init, module list, agent).
    pub initramfs_inputs: String,
}

impl Assets {
    /// Reads an `assets.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(XtaskError::io("read", path))?;
        serde_json::from_str(&text).map_err(|e| XtaskError::BadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes it as pretty JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| XtaskError::Other(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text + "\n").map_err(XtaskError::io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(XtaskError::io("rename to", path))
    }

    /// Whether every file it names exists.
    fn complete(&self) -> bool {
        [
            &self.bzimage,
            &self.initramfs,
            &self.busybox,
            &self.agent,
            &self.modules_dir,
        ]
        .into_iter()
        .chain(self.vmlinux.as_ref())
        .all(|p| p.exists())
    }
}

/// The package versions that key the cache.
#[derive(Debug, Clone)]
struct Versions {
    kernel_package: String,
    kernel_version: String,
    kernel_release: String,
    busybox_version: String,
}

fn resolve_versions() -> Result<Versions> {
    apt::require_apt()?;
    let kernel_package = apt::resolve_meta(KERNEL_META, "linux-image-", HINT)?;
    let kernel_version = apt::candidate_version(&kernel_package, HINT)?;
    let busybox_version = apt::candidate_version(BUSYBOX_PACKAGE, HINT)?;
    let kernel_release = kernel_package
        .strip_prefix("linux-image-")
        .unwrap_or(&kernel_package)
        .to_owned();
    Ok(Versions {
        kernel_package,
        kernel_version,
        kernel_release,
        busybox_version,
    })
}

/// Downloads and unpacks the packages into `dir/extracted` (once).
fn extract_packages(v: &Versions, dir: &Path) -> Result<()> {
    let done = dir.join("extracted/.complete");
    if done.exists() {
        return Ok(());
    }
    let debs = dir.join("debs");
    eprintln!(
        "xtask: downloading {} {} and {BUSYBOX_PACKAGE} {}",
        v.kernel_package, v.kernel_version, v.busybox_version
    );
    let kernel_deb = apt::download(&v.kernel_package, &v.kernel_version, &debs)?;
    let busybox_deb = apt::download(BUSYBOX_PACKAGE, &v.busybox_version, &debs)?;
    let extracted = dir.join("extracted");
    if extracted.exists() {
        std::fs::remove_dir_all(&extracted).map_err(XtaskError::io("remove", &extracted))?;
    }
    eprintln!("xtask: unpacking with dpkg-deb");
    apt::extract(&kernel_deb, &extracted.join("kernel"))?;
    apt::extract(&busybox_deb, &extracted.join("busybox"))?;
    std::fs::remove_dir_all(&debs).map_err(XtaskError::io("remove", &debs))?;
    std::fs::write(&done, b"").map_err(XtaskError::io("write", &done))
}

/// Copies the kernel and busybox out of the unpacked packages and extracts
/// the vmlinux (once).
fn kernel_files(v: &Versions, dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let bzimage = dir.join("vmlinuz");
    let vmlinux = dir.join("vmlinux");
    let busybox = dir.join("busybox");
    let extracted = dir.join("extracted");
    if !bzimage.exists() {
        let source = extracted.join(format!("kernel/boot/vmlinuz-{}", v.kernel_release));
        std::fs::copy(&source, &bzimage).map_err(XtaskError::io("copy", &source))?;
    }
    if !vmlinux.exists() {
        eprintln!("xtask: extracting the ELF vmlinux from the bzImage");
        let elf = vmlinux::extract(&bzimage)?;
        let tmp = vmlinux.with_extension("tmp");
        std::fs::write(&tmp, elf).map_err(XtaskError::io("write", &tmp))?;
        std::fs::rename(&tmp, &vmlinux).map_err(XtaskError::io("rename to", &vmlinux))?;
    }
    if !busybox.exists() {
        let source = extracted.join("busybox/bin/busybox");
        std::fs::copy(&source, &busybox).map_err(XtaskError::io("copy", &source))?;
    }
    Ok((bzimage, vmlinux, busybox))
}

/// Builds (or reuses) the guest assets; returns them and whether the
/// initramfs was reused from the cache.
pub fn ensure() -> Result<(Assets, bool)> {
    let v = resolve_versions()?;
    let key = format!(
        "{}-{}_{}",
        cache::sanitize(&v.kernel_release),
        cache::sanitize(&v.kernel_version),
        cache::sanitize(&v.busybox_version)
    );
    let dir = cache::cache_root().join("guest").join(key);
    cmd::mkdir(&dir)?;
    extract_packages(&v, &dir)?;
    let (bzimage, vmlinux, busybox) = kernel_files(&v, &dir)?;

    let built_agent = build::build_static(Some("uvm-guest-agent"), "uvm-agent")?;
    let agent_bytes = std::fs::read(&built_agent).map_err(XtaskError::io("read", &built_agent))?;
    let init = INIT.replace("@AGENT_PORT@", &AGENT_PORT.to_string());
    let inputs = cache::fingerprint(&[
        init.as_bytes(),
        MODULES.as_bytes(),
        POWER_BUTTON.as_bytes(),
        CMDLINE.as_bytes(),
        &agent_bytes,
    ]);

    let json = dir.join("assets.json");
    if let Ok(assets) = Assets::load(&json)
        && assets.initramfs_inputs == inputs
        && assets.schema == SCHEMA
        && assets.complete()
    {
        return Ok((assets, true));
    }

    eprintln!("xtask: building the guest initramfs");
    let agent = dir.join("uvm-agent");
    std::fs::write(&agent, &agent_bytes).map_err(XtaskError::io("write", &agent))?;
    let modules_dir = dir
        .join("extracted/kernel/lib/modules")
        .join(&v.kernel_release);
    let wanted = initramfs::parse_module_list(MODULES);
    let (mut archive, _) =
        initramfs::base(&busybox, &modules_dir, &v.kernel_release, &wanted, &init)?;
    archive.file("sbin/uvm-agent", agent_bytes, 0o755);
    archive.file(
        POWER_BUTTON_HANDLER,
        POWER_BUTTON.as_bytes().to_vec(),
        0o755,
    );
    let initramfs_path = dir.join("initramfs.cpio");
    initramfs::write(&archive, &initramfs_path)?;
    let order = crate::modules::ModuleIndex::scan(&modules_dir)?.closure(&wanted)?;

    let assets = Assets {
        schema: SCHEMA,
        dir: dir.clone(),
        kernel_package: v.kernel_package,
        kernel_version: v.kernel_version,
        kernel_release: v.kernel_release,
        busybox_version: v.busybox_version,
        bzimage,
        vmlinux: Some(vmlinux),
        initramfs: initramfs_path,
        modules: order
            .iter()
            .filter_map(|p| {
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .map(crate::modules::normalize)
            })
            .collect(),
        busybox,
        modules_dir,
        agent,
        agent_port: AGENT_PORT,
        cmdline: CMDLINE.to_owned(),
        initramfs_inputs: inputs,
    };
    assets.save(&json)?;
    Ok((assets, false))
}

fn size(path: &Path) -> String {
    std::fs::metadata(path)
        .map(|m| format!("{:.1} MiB", m.len() as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|_| "missing".to_owned())
}

/// Runs `cargo xtask guest [--json]`.
pub fn run(args: &[String]) -> Result<()> {
    let json = match args {
        [] => false,
        [flag] if flag == "--json" => true,
        other => {
            return Err(XtaskError::Usage(format!(
                "unexpected arguments to guest: {other:?}"
            )));
        }
    };
    let start = Instant::now();
    let (assets, reused) = ensure()?;
    let elapsed = start.elapsed();
    let path = assets.dir.join("assets.json");
    if json {
        let text = std::fs::read_to_string(&path).map_err(XtaskError::io("read", &path))?;
        print!("{text}");
        return Ok(());
    }
    let how = if reused {
        "reused from the cache"
    } else {
        "built"
    };
    println!(
        "guest assets {how} in {elapsed:.1?}: {}",
        assets.dir.display()
    );
    println!(
        "  kernel      {} {} (release {})",
        assets.kernel_package, assets.kernel_version, assets.kernel_release
    );
    println!("  busybox     {BUSYBOX_PACKAGE} {}", assets.busybox_version);
    println!(
        "  bzImage     {} ({})",
        assets.bzimage.display(),
        size(&assets.bzimage)
    );
    if let Some(vmlinux) = &assets.vmlinux {
        println!("  vmlinux     {} ({})", vmlinux.display(), size(vmlinux));
    }
    println!(
        "  initramfs   {} ({}, {} modules)",
        assets.initramfs.display(),
        size(&assets.initramfs),
        assets.modules.len()
    );
    println!(
        "  agent       {} (vsock port {})",
        assets.agent.display(),
        assets.agent_port
    );
    println!(
        "  cmdline     {} tsc_early_khz=<host kHz under TCG>",
        assets.cmdline
    );
    println!("  assets.json {}", path.display());
    Ok(())
}
