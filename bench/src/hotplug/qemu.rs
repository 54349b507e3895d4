//! QEMU as a [`Target`]: `qemu-system-x86_64 -M pc -accel kvm` booting the
//! same kernel, initramfs and command line as backend-kvm, with a
//! vhost-vsock device for the guest agent and a QMP socket. `-M pc` gives
//! PIIX4 ACPI PCI hotplug, which this guest kernel handles (microvm's
//! GED-based hotplug it does not). Devices go in with QMP `device_add`
//! (their backends, `blockdev-add`, `netdev_add`, `object-add` or a
//! `virtiofsd` with `chardev-add`, are prepared first, outside the time
//! measured) and out with `device_del`, whose end is the `DEVICE_DELETED`
//! event.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use uvm_api::GuestProbe;
use uvm_devices::virtio::fs::{VirtiofsdProcess, find_virtiofsd};
use uvm_guest_agent::client::AgentClient;

use super::device::{Device, Names, Spec};
use super::kind::Kind;
use super::kvm::agent_up;
use super::qmp::Qmp;
use super::target::Target;
use super::vsock_io;
use crate::assets::{GuestAssets, boot_cmdline};
use crate::error::{BenchError, Result};

/// The VMM's name in reports.
pub const VMM: &str = "qemu-pc";
/// The guest's vsock CID.
pub const CID: u32 = 42;
/// The virtio-scsi controller's QOM id (its bus is `scsi0.0`).
pub const SCSI_ID: &str = "scsi0";
/// Address space for hot-added memory devices (pmem) beyond guest RAM,
/// MiB: room for every run's image (at most 1 GiB in all) and alignment.
pub const MAXMEM_EXTRA_MIB: u64 = 4096;
/// How long the QMP socket may take to appear.
const QMP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the QEMU guest boots, and with which QEMU.
#[derive(Debug, Clone)]
pub struct QemuGuest<'a> {
    /// The guest.
    pub assets: &'a GuestAssets,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// The firmware directory (`-L`), with SeaBIOS (`bios-256k.bin`) and
    /// the option ROMs of `-kernel`; `None` for QEMU's own.
    pub firmware: Option<PathBuf>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// How long the boot may take.
    pub timeout: Duration,
    /// Runs per kind (pmem memory slots).
    pub runs: usize,
}

/// Where QEMU's sockets and console go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The directory.
    pub dir: PathBuf,
    /// The QMP socket.
    pub qmp: PathBuf,
    /// The serial console's file.
    pub console: PathBuf,
}

impl Paths {
    /// The paths in `dir`.
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            qmp: dir.join("qemu-qmp.sock"),
            console: dir.join("qemu-console.log"),
        }
    }

    /// The `virtiofsd` socket of run `run`.
    fn virtiofsd(&self, run: usize) -> PathBuf {
        self.dir.join(format!("qemu-virtiofsd-{run}.sock"))
    }
}

/// Whether the guest gets shared RAM (for vhost-user-fs): only when shares
/// are measured and a `virtiofsd` exists.
fn shares_possible(kinds: &[Kind]) -> bool {
    kinds.contains(&Kind::Share) && find_virtiofsd().is_some()
}

/// The QEMU command line for `kinds`.
pub fn command(guest: &QemuGuest<'_>, kinds: &[Kind], paths: &Paths) -> Command {
    command_with(guest, kinds, paths, shares_possible(kinds))
}

fn command_with(guest: &QemuGuest<'_>, kinds: &[Kind], paths: &Paths, shared_ram: bool) -> Command {
    let mut command = Command::new(&guest.qemu);
    if let Some(dir) = &guest.firmware {
        command.arg("-L").arg(dir);
    }
    let mib = guest.memory_mib;
    let memory = if kinds.contains(&Kind::Pmem) {
        // One memory slot per pmem device: QEMU cannot unplug them.
        let slots = (guest.runs + 1).clamp(4, 256);
        let maxmem = u64::from(mib) + MAXMEM_EXTRA_MIB;
        format!("{mib}M,slots={slots},maxmem={maxmem}M")
    } else {
        format!("{mib}M")
    };
    command
        .args(["-M", "pc", "-accel", "kvm", "-cpu", "host"])
        .args(["-m", &memory, "-smp", "1"]);
    if shared_ram {
        command
            .args([
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mib}M,share=on"),
            ])
            .args(["-numa", "node,memdev=mem"]);
    }
    command
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-serial")
        .arg(format!("file:{}", paths.console.display()))
        .arg("-kernel")
        .arg(&guest.assets.kernel)
        .arg("-initrd")
        .arg(&guest.assets.initrd)
        .args(["-append", &boot_cmdline(guest.assets)])
        .args(["-device", &format!("vhost-vsock-pci,guest-cid={CID}")]);
    if kinds.contains(&Kind::Scsi) {
        command.args(["-device", &format!("virtio-scsi-pci,id={SCSI_ID}")]);
    }
    command
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", paths.qmp.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// QOM ids of one run's device and its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ids {
    device: String,
    backend: String,
}

fn ids(device: &Device) -> Ids {
    let run = device.run;
    let (device, backend) = match &device.spec {
        Spec::Scsi { .. } => (format!("lun{run}"), format!("d{run}")),
        Spec::Nic { id, .. } => (id.clone(), format!("n{run}")),
        Spec::Pmem { .. } => (format!("pmem{run}"), format!("pm{run}")),
        Spec::Share { .. } => (format!("fs{run}"), format!("fsc{run}")),
    };
    Ids { device, backend }
}

/// The QMP command (and arguments) that prepares the backend of `device`,
/// given the `virtiofsd` socket for shares.
fn backend_command(device: &Device, socket: &Path) -> (&'static str, Value) {
    let id = ids(device).backend;
    match &device.spec {
        Spec::Scsi { image, .. } => (
            "blockdev-add",
            json!({
                "driver": "raw",
                "node-name": id,
                "file": { "driver": "file", "filename": image },
            }),
        ),
        Spec::Nic { tap, .. } => (
            "netdev_add",
            json!({
                "type": "tap",
                "id": id,
                "ifname": tap,
                "script": "no",
                "downscript": "no",
            }),
        ),
        Spec::Pmem { image, size, .. } => (
            "object-add",
            json!({
                "qom-type": "memory-backend-file",
                "id": id,
                "mem-path": image,
                "size": size,
                "share": true,
            }),
        ),
        Spec::Share { .. } => (
            "chardev-add",
            json!({
                "id": id,
                "backend": {
                    "type": "socket",
                    "data": {
                        "addr": { "type": "unix", "data": { "path": socket } },
                        "server": false,
                    },
                },
            }),
        ),
    }
}

/// The `device_add` arguments of `device`.
fn device_arguments(device: &Device) -> Value {
    let Ids {
        device: id,
        backend,
    } = ids(device);
    match &device.spec {
        Spec::Scsi { lun, .. } => json!({
            "driver": "scsi-hd",
            "bus": format!("{SCSI_ID}.0"),
            "lun": lun,
            "drive": backend,
            "id": id,
        }),
        Spec::Nic { mac, .. } => json!({
            "driver": "virtio-net-pci",
            "netdev": backend,
            "mac": mac.to_string(),
            "id": id,
            "romfile": "",
        }),
        Spec::Pmem { .. } => json!({
            "driver": "virtio-pmem-pci",
            "memdev": backend,
            "id": id,
        }),
        Spec::Share { tag, .. } => json!({
            "driver": "vhost-user-fs-pci",
            "chardev": backend,
            "tag": tag,
            "id": id,
        }),
    }
}

/// The QMP command (and arguments) that drops the backend of `device`
/// once the device is gone.
fn backend_removal(device: &Device) -> (&'static str, Value) {
    let id = ids(device).backend;
    match device.spec {
        Spec::Scsi { .. } => ("blockdev-del", json!({ "node-name": id })),
        Spec::Nic { .. } => ("netdev_del", json!({ "id": id })),
        Spec::Pmem { .. } => ("object-del", json!({ "id": id })),
        Spec::Share { .. } => ("chardev-remove", json!({ "id": id })),
    }
}

fn collect(stream: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.take(64 << 10).read_to_string(&mut text);
        text
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running QEMU guest.
pub struct QemuTarget {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    qmp: Option<Qmp>,
    agent: AgentClient,
    paths: Paths,
    shared_ram: bool,
    virtiofsd: Option<PathBuf>,
    daemons: HashMap<usize, VirtiofsdProcess>,
}

impl QemuTarget {
    /// The QEMU process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns QEMU (with what `kinds` need) with its sockets and console in
    /// `dir`, connects to QMP and waits until the guest agent answers;
    /// returns the target and the time from spawning to that answer.
    pub async fn boot(
        guest: &QemuGuest<'_>,
        kinds: &[Kind],
        dir: &Path,
    ) -> Result<(QemuTarget, Duration)> {
        if !Path::new("/dev/vhost-vsock").exists() {
            return Err(BenchError::Vm(
                "no /dev/vhost-vsock (load the vhost_vsock module)".into(),
            ));
        }
        let paths = Paths::in_dir(dir);
        let virtiofsd = find_virtiofsd();
        let shared_ram = kinds.contains(&Kind::Share) && virtiofsd.is_some();
        let mut command = command_with(guest, kinds, &paths, shared_ram);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(BenchError::io(format!("spawn {}", guest.qemu.display())))?;
        let stderr = child.stderr.take().map(collect);
        let mut target = QemuTarget {
            child,
            stderr,
            qmp: None,
            agent: vsock_io::agent_client(CID, guest.assets.agent_port)
                .with_timeout(Duration::from_secs(10)),
            paths,
            shared_ram,
            virtiofsd,
            daemons: HashMap::new(),
        };
        match target.start(started, guest.timeout).await {
            Ok(after) => Ok((target, after)),
            Err(e) => {
                target.kill();
                eprintln!(
                    "hotplug-bench: qemu: console tail:\n{}",
                    tail(&target.paths.console, 30)
                );
                if let Some(text) = target.stderr.take().and_then(|h| h.join().ok()) {
                    eprintln!("hotplug-bench: qemu: stderr:\n{text}");
                }
                Err(e)
            }
        }
    }

    async fn start(&mut self, started: Instant, timeout: Duration) -> Result<Duration> {
        self.qmp = Some(Qmp::connect(&self.paths.qmp, QMP_TIMEOUT)?);
        self.alive()?;
        agent_up(&self.agent, started, timeout).await
    }

    fn alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Vm(format!("QEMU exited: {status}"))),
            Err(e) => Err(BenchError::io("wait for QEMU")(e)),
        }
    }

    fn qmp(&mut self) -> Result<&mut Qmp> {
        self.qmp
            .as_mut()
            .ok_or_else(|| BenchError::Vm("no QMP connection".into()))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.daemons.clear();
    }

    /// Kills QEMU and the `virtiofsd`s.
    pub fn shut_down(mut self) {
        self.kill();
    }
}

#[async_trait(?Send)]
impl Target for QemuTarget {
    fn vmm(&self) -> &'static str {
        VMM
    }

    fn names(&self) -> Names {
        Names::QEMU
    }

    fn probe(&self) -> Result<&dyn GuestProbe> {
        Ok(&self.agent)
    }

    fn unsupported(&self, kind: Kind) -> Option<String> {
        match kind {
            Kind::Share if self.virtiofsd.is_none() => {
                Some("no virtiofsd (set UVM_VIRTIOFSD)".into())
            }
            Kind::Share if !self.shared_ram => Some("the guest RAM is not shared".into()),
            _ => None,
        }
    }

    async fn prepare(&mut self, device: &Device) -> Result<()> {
        let socket = self.paths.virtiofsd(device.run);
        if let Spec::Share { dir, .. } = &device.spec {
            let binary = self
                .virtiofsd
                .clone()
                .ok_or_else(|| BenchError::Vm("no virtiofsd".into()))?;
            let daemon = VirtiofsdProcess::spawn(&binary, dir, &socket, false)
                .map_err(|e| BenchError::Vm(format!("start virtiofsd: {e}")))?;
            self.daemons.insert(device.run, daemon);
        }
        let (command, arguments) = backend_command(device, &socket);
        self.qmp()?.execute(command, arguments)?;
        Ok(())
    }

    async fn add(&mut self, device: &Device) -> Result<()> {
        self.qmp()?
            .execute("device_add", device_arguments(device))?;
        Ok(())
    }

    async fn remove(&mut self, device: &Device, timeout: Duration) -> Result<Duration> {
        let id = ids(device).device;
        let qmp = self.qmp()?;
        let called = Instant::now();
        qmp.execute("device_del", json!({ "id": id }))?;
        qmp.wait_event(
            "DEVICE_DELETED",
            |data| data.get("device").and_then(Value::as_str) == Some(id.as_str()),
            timeout,
        )?;
        let released = called.elapsed();
        let (command, arguments) = backend_removal(device);
        if let Err(e) = qmp.execute(command, arguments) {
            eprintln!("hotplug-bench: qemu: releasing the backend of {id}: {e}");
        }
        self.daemons.remove(&device.run);
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotplug::device::Workspace;

    fn assets() -> GuestAssets {
        GuestAssets {
            kernel: "/g/vmlinuz".into(),
            initrd: "/g/initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            agent_port: 1024,
        }
    }

    #[test]
    fn builds_the_pc_command() {
        let assets = assets();
        let guest = QemuGuest {
            assets: &assets,
            qemu: "/q/qemu-system-x86_64".into(),
            firmware: Some("/q/fw".into()),
            memory_mib: 512,
            timeout: Duration::from_secs(1),
            runs: 5,
        };
        let paths = Paths::in_dir(Path::new("/w"));
        let args = |kinds: &[Kind], shared: bool| {
            command_with(&guest, kinds, &paths, shared)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let scsi = args(&[Kind::Scsi, Kind::Nic], false);
        assert!(
            scsi.starts_with("-L /q/fw -M pc -accel kvm -cpu host -m 512M -smp 1"),
            "{scsi}"
        );
        assert!(scsi.contains("-serial file:/w/qemu-console.log"), "{scsi}");
        assert!(scsi.contains("vhost-vsock-pci,guest-cid=42"), "{scsi}");
        assert!(scsi.contains("-device virtio-scsi-pci,id=scsi0"), "{scsi}");
        assert!(
            scsi.ends_with("-qmp unix:/w/qemu-qmp.sock,server=on,wait=off"),
            "{scsi}"
        );
        assert!(!scsi.contains("memfd"), "{scsi}");
        let all = args(&Kind::ALL, true);
        assert!(all.contains("-m 512M,slots=6,maxmem="), "{all}");
        assert!(
            all.contains("memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem"),
            "{all}"
        );
    }

    #[test]
    fn qmp_arguments_per_kind() {
        let ws = Workspace::new().unwrap();
        let socket = Path::new("/w/fs.sock");
        let scsi = ws.device(Kind::Scsi, 2, Names::QEMU).unwrap();
        let (command, args) = backend_command(&scsi, socket);
        assert_eq!(command, "blockdev-add");
        assert_eq!(args["node-name"], "d2");
        let dev = device_arguments(&scsi);
        assert_eq!(
            (
                dev["driver"].as_str(),
                dev["bus"].as_str(),
                dev["lun"].as_u64()
            ),
            (Some("scsi-hd"), Some("scsi0.0"), Some(1))
        );
        assert_eq!(
            (dev["drive"].as_str(), dev["id"].as_str()),
            (Some("d2"), Some("lun2"))
        );
        assert_eq!(backend_removal(&scsi).0, "blockdev-del");

        let nic = ws.device(Kind::Nic, 1, Names::QEMU).unwrap();
        let (command, args) = backend_command(&nic, socket);
        assert_eq!(
            (command, args["ifname"].as_str()),
            ("netdev_add", Some("uvmqb1"))
        );
        let dev = device_arguments(&nic);
        assert_eq!(dev["romfile"], "");
        assert_eq!(dev["mac"], "02:71:68:62:00:01");
        assert_eq!(dev["netdev"], "n1");

        let pmem = ws.device(Kind::Pmem, 3, Names::QEMU).unwrap();
        let (command, args) = backend_command(&pmem, socket);
        assert_eq!(
            (command, args["size"].as_u64()),
            ("object-add", Some(6 << 20))
        );
        assert_eq!(device_arguments(&pmem)["memdev"], "pm3");

        let share = ws.device(Kind::Share, 1, Names::QEMU).unwrap();
        let (command, args) = backend_command(&share, socket);
        assert_eq!(command, "chardev-add");
        assert_eq!(
            args["backend"]["data"]["addr"]["data"]["path"],
            "/w/fs.sock"
        );
        let dev = device_arguments(&share);
        assert_eq!(
            (dev["tag"].as_str(), dev["chardev"].as_str()),
            (Some("qb1"), Some("fsc1"))
        );
        assert_eq!(
            backend_removal(&share),
            ("chardev-remove", json!({"id": "fsc1"}))
        );
    }
}
