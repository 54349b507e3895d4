//! `kvm-hotplug-cycles`: hot-adds and removes each kind of device many
//! times in one running Debian guest and checks that the host process
//! does not grow: file descriptors, threads, and anonymous resident memory
//! (`RssAnon`: guest RAM is a shared memfd, so it is not counted).
//! Meant for `cargo xtask lab -- kvm-hotplug-cycles [--cycles N]`.
//!
//! Per cycle and kind: add, wait until the guest sees the device through
//! the agent, remove, wait until the guest has released it. Kinds: a SCSI
//! LUN (on controller 0, cold-plugged), a virtio-net NIC (on a tap), a
//! virtio-pmem image, and a virtio-fs share (when a `virtiofsd` is there).
//! One warm-up cycle of each kind runs before the baseline is taken.
//! Exit code 0 when nothing grew (memory: by less than 2 MiB), 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use uvm_api::{
    ConsoleSink, DiskFormat, GuestProbe, ImageFormat, MacAddress, Nic, Removal, ScsiDisk,
    ShareKind, SharedFolder, StopMode, Uvm, UvmConfig, VpmemController, VpmemDevice,
};
use uvm_backend_kvm::{KvmBackend, KvmUvm};
use uvm_tools::guest_assets::GuestAssets;
use uvm_tools::lab_main::{count_argument, exit_code, run_with_guest_assets};

const GUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MEMORY_SLACK_KIB: i64 = 2048;

/// What the host process holds.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    fds: usize,
    threads: usize,
    rss_anon_kib: i64,
}

fn footprint() -> Result<Footprint, String> {
    let count = |dir: &str| {
        std::fs::read_dir(dir)
            .map(|d| d.count())
            .map_err(|e| format!("{dir}: {e}"))
    };
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let rss_anon_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no RssAnon in /proc/self/status")?;
    Ok(Footprint {
        fds: count("/proc/self/fd")?,
        threads: count("/proc/self/task")?,
        rss_anon_kib,
    })
}

/// One kind of device the cycles exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lun,
    Nic,
    Pmem,
    Share,
}

struct Cycler<'a> {
    vm: &'a KvmUvm,
    probe: &'a dyn GuestProbe,
    dir: PathBuf,
    mac: MacAddress,
}

fn image(path: &Path, len: u64) -> Result<PathBuf, String> {
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    f.set_len(len).map_err(|e| e.to_string())?;
    Ok(path.to_path_buf())
}

/// Polls `f` every 10 ms until it answers `Ok(true)`, and fails at once
/// when `vm` has stopped (saying why). On timeout the error
/// names the last answer and how long the slowest call took, which tells
/// a guest that never saw the device (answers `Ok(false)` quickly) from an
/// agent that stopped answering.
async fn eventually<F, Fut>(vm: &KvmUvm, what: &str, mut f: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let started = Instant::now();
    let mut last = String::from("never asked");
    let mut calls = 0u32;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < GUEST_TIMEOUT {
        if let Some(status) = vm.exit_status() {
            return Err(format!(
                "{what}: the VM stopped after {:.1?}: {status:?}",
                started.elapsed()
            ));
        }
        let asked = Instant::now();
        let answer = f().await;
        slowest = slowest.max(asked.elapsed());
        calls += 1;
        match answer {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => last = "not there yet".into(),
            Err(e) => last = format!("error: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "{what}: not within {GUEST_TIMEOUT:?} ({calls} probes, slowest {slowest:.1?}, last: {last})"
    ))
}

impl Cycler<'_> {
    async fn seen(&self, kind: Kind, n: u32) -> Result<bool, String> {
        let p = self.probe;
        let seen = match kind {
            Kind::Lun => p
                .block_devices()
                .await
                .map(|d| d.iter().any(|d| d.scsi_address == Some((0, 1)))),
            Kind::Nic => p
                .network_interfaces()
                .await
                .map(|n| n.iter().any(|n| n.mac == self.mac)),
            Kind::Pmem => p
                .pmem_devices()
                .await
                .map(|d| d.iter().any(|d| d.size_bytes == 2 << 20)),
            Kind::Share => p
                .list_share(&format!("cyc{n}"))
                .await
                .map(|f| f.iter().any(|f| f == "f.txt")),
        };
        seen.map_err(|e| e.to_string())
    }

    async fn add(&self, kind: Kind, n: u32) -> Result<(), String> {
        let vm = self.vm;
        let r = match kind {
            Kind::Lun => {
                let path = image(&self.dir.join("lun.img"), 4 << 20)?;
                vm.scsi()
                    .ok_or("no scsi")?
                    .add_disk(ScsiDisk {
                        controller: 0,
                        lun: 1,
                        path,
                        format: DiskFormat::Raw,
                        read_only: false,
                    })
                    .await
            }
            Kind::Nic => {
                vm.network()
                    .ok_or("no network")?
                    .add_nic(Nic {
                        id: "cyc".into(),
                        endpoint: "uvmcyc0".into(),
                        mac: self.mac,
                    })
                    .await
            }
            Kind::Pmem => {
                let path = image(&self.dir.join("pmem.img"), 2 << 20)?;
                vm.vpmem()
                    .ok_or("no vpmem")?
                    .add_device(VpmemDevice {
                        id: 0,
                        path,
                        read_only: true,
                        format: ImageFormat::Raw,
                    })
                    .await
            }
            Kind::Share => {
                vm.shared_folders()
                    .ok_or("no shares")?
                    .add_share(SharedFolder {
                        kind: ShareKind::VirtioFs,
                        name: format!("cyc{n}"),
                        host_path: self.dir.join("share"),
                        read_only: false,
                        allowed_files: Vec::new(),
                    })
                    .await
            }
        };
        r.map_err(|e| format!("add {kind:?}: {e}"))
    }

    async fn remove(&self, kind: Kind, n: u32) -> Result<Removal, String> {
        let vm = self.vm;
        let r = match kind {
            Kind::Lun => vm.scsi().ok_or("no scsi")?.remove_disk(0, 1).await,
            Kind::Nic => vm.network().ok_or("no network")?.remove_nic("cyc").await,
            Kind::Pmem => vm.vpmem().ok_or("no vpmem")?.remove_device(0).await,
            Kind::Share => {
                vm.shared_folders()
                    .ok_or("no shares")?
                    .remove_share(ShareKind::VirtioFs, &format!("cyc{n}"))
                    .await
            }
        };
        r.map_err(|e| format!("remove {kind:?}: {e}"))
    }

    /// One add / seen / remove / released cycle; returns add→seen. The
    /// first cycle of each kind and every tenth say where they stand, so a
    /// run that never ends shows the step it stopped at.
    async fn cycle(&self, kind: Kind, n: u32) -> Result<Duration, String> {
        let say = |step: &str| {
            if n.is_multiple_of(10) {
                println!("kvm-hotplug-cycles: {kind:?} cycle {n}: {step}");
            }
        };
        say("add");
        self.add(kind, n).await?;
        let seen = eventually(self.vm, &format!("{kind:?} {n} seen"), || {
            self.seen(kind, n)
        })
        .await?;
        say("seen; remove");
        let removal = self.remove(kind, n).await?;
        removal
            .wait(GUEST_TIMEOUT)
            .await
            .map_err(|e| format!("{kind:?} {n} removal: {e}"))?;
        say("released");
        Ok(seen)
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn run(assets: &GuestAssets, cycles: u32) -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::create_dir(dir.path().join("share")).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("share/f.txt"), b"f").map_err(|e| e.to_string())?;
    let mut config = UvmConfig::builder("hotplug-cycles")
        .vcpus(1)
        .memory_mib(512)
        .kernel(&assets.kernel)
        .initrd(&assets.initrd)
        // Without address randomization a guest address in a failure's
        // diagnosis reads straight off the kernel's System.map.
        .cmdline(assets.recommended_cmdline("nokaslr"))
        .console(ConsoleSink::Discard)
        .build()
        .map_err(|e| e.to_string())?;
    config.devices.scsi_controllers = 1;
    config.devices.vpmem = Some(VpmemController {
        max_devices: 4,
        max_size_bytes: 8 << 20,
    });
    let vm = KvmBackend::new()
        .create_vm(config)
        .map_err(|e| e.to_string())?;
    vm.start().await.map_err(|e| e.to_string())?;
    let result = cycles_in(&vm, dir.path(), cycles).await;
    if result.is_err() {
        print_console_tail(&vm);
        uvm_tools::diagnosis::print("kvm-hotplug-cycles", &vm).await;
    }
    let _ = vm.stop(StopMode::Force).await;
    result
}

/// The guest's last console lines, for a run that failed.
fn print_console_tail(vm: &KvmUvm) {
    let console = vm.console_output();
    let lines: Vec<&str> = console.lines().collect();
    let tail = &lines[lines.len().saturating_sub(25)..];
    println!("kvm-hotplug-cycles: the guest console's last lines:");
    for line in tail {
        println!("kvm-hotplug-cycles:   {line}");
    }
}

async fn cycles_in(vm: &KvmUvm, dir: &Path, cycles: u32) -> Result<bool, String> {
    let probe = vm.guest_probe().ok_or("no guest probe")?;
    eventually(vm, "the agent", || async {
        probe
            .uptime()
            .await
            .map(|_| true)
            .map_err(|e| e.to_string())
    })
    .await?;
    let cycler = Cycler {
        vm,
        probe,
        dir: dir.to_path_buf(),
        mac: MacAddress::new([0x02, 0x75, 0x76, 0xcc, 0, 1]).map_err(|e| e.to_string())?,
    };
    let mut kinds = vec![Kind::Lun, Kind::Nic, Kind::Pmem];
    if vm.shared_folders().is_some() {
        kinds.push(Kind::Share);
    } else {
        println!("kvm-hotplug-cycles: no virtiofsd: shares skipped");
    }
    for &kind in &kinds {
        cycler.cycle(kind, 0).await?;
    }
    let before = footprint()?;
    let started = Instant::now();
    let mut latencies: Vec<(Kind, Vec<Duration>)> =
        kinds.iter().map(|k| (*k, Vec::new())).collect();
    for n in 1..=cycles {
        for (kind, seen) in &mut latencies {
            seen.push(cycler.cycle(*kind, n).await?);
        }
    }
    let after = footprint()?;
    println!(
        "kvm-hotplug-cycles: {cycles} cycles of {} kinds in {:.1?}",
        kinds.len(),
        started.elapsed()
    );
    for (kind, seen) in latencies {
        println!(
            "kvm-hotplug-cycles: {kind:?}: median add-return -> guest sees it (10 ms polling) {:.1?}",
            median(seen)
        );
    }
    println!("kvm-hotplug-cycles: before {before:?}");
    println!("kvm-hotplug-cycles: after  {after:?}");
    let grew_kib = after.rss_anon_kib - before.rss_anon_kib;
    let ok =
        after.fds <= before.fds && after.threads <= before.threads && grew_kib < MEMORY_SLACK_KIB;
    println!(
        "kvm-hotplug-cycles: fds {:+}, threads {:+}, RssAnon {grew_kib:+} KiB: {}",
        after.fds as i64 - before.fds as i64,
        after.threads as i64 - before.threads as i64,
        if ok { "no growth" } else { "GREW" }
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cycles = match count_argument("kvm-hotplug-cycles", "--cycles", 50, &args) {
        Ok(n) => n,
        Err(code) => return code,
    };
    run_with_guest_assets("kvm-hotplug-cycles", |assets| async move {
        exit_code("kvm-hotplug-cycles", run(&assets, cycles).await)
    })
}
