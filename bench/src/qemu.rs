//! QEMU boots of the same guest: `qemu-system-x86_64 -M microvm -accel kvm`
//! with a vhost-vsock device, timed from spawning QEMU to the agent's first
//! answer over `AF_VSOCK` (and to `UVM_GUEST_READY` on its serial console).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::agent;
use crate::assets::{GuestAssets, READY, boot_cmdline};
use crate::error::{BenchError, Result};
use crate::kernel_log;
use crate::sample::{Sample, Vmm};
use crate::smaps;

/// What a QEMU run boots, and with which QEMU.
#[derive(Debug, Clone)]
pub struct QemuRun<'a> {
    /// The guest.
    pub assets: &'a GuestAssets,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// A directory with `bios-microvm.bin` (qboot) and the option ROMs,
    /// passed as `-L`; `None` for QEMU's built-in data directory.
    pub firmware: Option<PathBuf>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// How long to wait for the guest.
    pub timeout: Duration,
}

/// Finds QEMU: `$UVM_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("UVM_QEMU") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// The firmware directory: `$UVM_QEMU_FIRMWARE` if set.
pub fn find_firmware() -> Option<PathBuf> {
    std::env::var_os("UVM_QEMU_FIRMWARE").map(PathBuf::from)
}

/// The QEMU command line for a boot with vsock guest CID `cid`.
pub fn command(run: &QemuRun<'_>, cid: u32) -> Command {
    let mut command = Command::new(&run.qemu);
    if let Some(dir) = &run.firmware {
        command.arg("-L").arg(dir);
    }
    command
        .args(["-M", "microvm", "-accel", "kvm", "-cpu", "host"])
        .args(["-m", &run.memory_mib.to_string(), "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(&run.assets.kernel)
        .arg("-initrd")
        .arg(&run.assets.initrd)
        .args(["-append", &boot_cmdline(run.assets)])
        .args(["-device", &format!("vhost-vsock-device,guest-cid={cid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Keeps the last lines of the console (in `log`) and the initramfs
/// unpack lines (in `marks`), and reports when `READY` shows up.
fn watch_console(
    stdout: impl Read + Send + 'static,
    started: Instant,
    log: Arc<Mutex<Vec<String>>>,
    marks: Arc<Mutex<Vec<String>>>,
) -> mpsc::Receiver<Duration> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if text.contains(READY) {
                let _ = tx.send(started.elapsed());
            }
            if kernel_log::is_unpack_line(&text) {
                marks.lock().push(text.clone());
            }
            let mut log = log.lock();
            log.push(text);
            if log.len() > 40 {
                log.remove(0);
            }
        }
    });
    rx
}

fn collect(stream: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stream).read_to_string(&mut text);
        text
    })
}

fn measure(
    run: &QemuRun<'_>,
    child: &mut Child,
    started: Instant,
    ready: &mpsc::Receiver<Duration>,
    number: usize,
) -> Result<Sample> {
    let deadline = started + run.timeout;
    let cid = child_cid(number);
    let alive = |child: &mut Child| match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(BenchError::Vm(format!("QEMU exited early: {status}"))),
        Err(e) => Err(BenchError::io("wait for QEMU")(e)),
    };
    let attempts = agent::ping_until(cid, run.assets.agent_port, deadline, || alive(child))?;
    let answer = started.elapsed();
    // /init prints the ready line right after starting the agent in the
    // background: it is there already or follows shortly.
    let console = ready.recv_timeout(Duration::from_secs(10)).ok();
    let guest_kib = u64::from(run.memory_mib) * 1024;
    let footprint = smaps::read_footprint(Some(child.id()), guest_kib)
        .map_err(BenchError::io(format!("read /proc/{}/smaps", child.id())))?;
    Ok(Sample {
        vmm: Vmm::Qemu,
        run: number,
        console_ready: console,
        agent_answer: Some(answer),
        footprint: Some(footprint),
        smaps_guest_rss_kib: Some(footprint.guest_rss_kib),
        exits: None,
        unpack: None,
        note: Some(format!("cid {cid}, {attempts} vsock attempts")),
    })
}

/// The guest CID of run `number` (a fresh one per run: 3 upwards).
pub fn child_cid(number: usize) -> u32 {
    3 + u32::try_from(number).unwrap_or(0)
}

/// Boots the guest once under QEMU, measures, and kills QEMU.
pub fn run_once(run: &QemuRun<'_>, number: usize) -> Result<Sample> {
    if !Path::new("/dev/vhost-vsock").exists() {
        return Err(BenchError::Vm(
            "no /dev/vhost-vsock (load the vhost_vsock module)".into(),
        ));
    }
    let mut command = command(run, child_cid(number));
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(BenchError::io(format!("spawn {}", run.qemu.display())))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let marks = Arc::new(Mutex::new(Vec::new()));
    let ready = match child.stdout.take() {
        Some(stdout) => watch_console(stdout, started, Arc::clone(&log), Arc::clone(&marks)),
        None => mpsc::channel().1,
    };
    let stderr = child.stderr.take().map(collect);
    let result = measure(run, &mut child, started, &ready, number).map(|mut sample| {
        sample.unpack = kernel_log::unpack_time(marks.lock().iter().map(String::as_str));
        sample
    });
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        let log = log.lock();
        eprintln!(
            "boot-bench: qemu run {number}: console tail:\n{}",
            log.join("\n")
        );
        if let Some(text) = stderr.and_then(|h| h.join().ok()) {
            eprintln!("boot-bench: qemu run {number}: stderr:\n{text}");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_microvm_command() {
        let assets = GuestAssets {
            kernel: "/g/vmlinuz".into(),
            initrd: "/g/initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            agent_port: 1024,
        };
        let run = QemuRun {
            assets: &assets,
            qemu: "/q/qemu-system-x86_64".into(),
            firmware: Some("/q/share".into()),
            memory_mib: 256,
            timeout: Duration::from_secs(1),
        };
        let c = command(&run, 7);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.starts_with("-L /q/share -M microvm -accel kvm"),
            "{joined}"
        );
        assert!(joined.contains("-m 256 -smp 1"), "{joined}");
        assert!(
            joined.contains("vhost-vsock-device,guest-cid=7"),
            "{joined}"
        );
        assert!(joined.contains("-initrd /g/initramfs.cpio"), "{joined}");
        assert_eq!(child_cid(1), 4);
    }
}
