//! `cargo xtask lab -- <program> [args]`: runs a program of this workspace
//! where `/dev/kvm` can boot Linux. On a host with VMX/SVM that is the host
//! itself; elsewhere (such as `kvm_pvm` hosts) it is an L1 guest under QEMU
//! TCG with an emulated AMD SVM CPU, whose `/dev/kvm` boots full L2 guests.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cpio::Entry;
use crate::error::{Result, XtaskError};
use crate::guest::{self, Assets};
use crate::l1_console::{self, Action, Channel, Console, EXIT_MARKER};
use crate::{apt, build, cache, cmd, initramfs, l1_serial, qemu_bundle};

/// The L1 `/init` (`guest/lab/init.sh`).
pub const INIT: &str = include_str!("../../guest/lab/init.sh");
/// The L1 module list (`guest/lab/modules.txt`).
pub const MODULES: &str = include_str!("../../guest/lab/modules.txt");
/// The QEMU CPU model: an AMD EPYC with SVM and nested paging.
pub const CPU: &str = "EPYC,+svm,+npt";

/// Where the program will run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// On this host, whose /dev/kvm is backed by VMX or SVM.
    Direct {
        /// Why this mode was chosen.
        reason: String,
    },
    /// In an L1 guest under QEMU TCG with emulated SVM.
    Nested {
        /// Why this mode was chosen.
        reason: String,
    },
}

/// Picks the mode from `/proc/cpuinfo` text and whether `/dev/kvm` exists.
pub fn detect(cpuinfo: &str, dev_kvm: bool) -> Mode {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let virt = ["vmx", "svm"].into_iter().find(|f| flags.contains(f));
    match (virt, dev_kvm) {
        (Some(flag), true) => Mode::Direct {
            reason: format!("/proc/cpuinfo has {flag} and /dev/kvm exists: this host's KVM can boot Linux"),
        },
        (Some(flag), false) => Mode::Nested {
            reason: format!("/proc/cpuinfo has {flag} but there is no /dev/kvm (load kvm-intel/kvm-amd to run directly): nested QEMU TCG with emulated SVM"),
        },
        (None, true) => Mode::Nested {
            reason: "no vmx/svm in /proc/cpuinfo (a /dev/kvm without hardware virtualization, such as kvm_pvm, cannot boot Linux): nested QEMU TCG with emulated SVM".into(),
        },
        (None, false) => Mode::Nested {
            reason: "no vmx/svm in /proc/cpuinfo and no /dev/kvm: nested QEMU TCG with emulated SVM".into(),
        },
    }
}

/// The mode for this host.
pub fn host_mode() -> Mode {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    detect(&cpuinfo, Path::new("/dev/kvm").exists())
}

/// The host CPU frequency in kHz from `/proc/cpuinfo` ("cpu MHz"), for
/// `tsc_early_khz=` (TSC calibration under TCG hangs at random without it).
pub fn host_khz(cpuinfo: &str) -> Option<u64> {
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split_once(':')?
        .1
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// Quotes a word for `sh`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Options of `cargo xtask lab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Only print the mode.
    pub print_mode: bool,
    /// Force the nested mode even on a VMX/SVM host.
    pub force_nested: bool,
    /// Seconds before the L1 is killed.
    pub timeout_secs: u64,
    /// L1 memory in MiB.
    pub memory_mib: u32,
    /// L1 vCPUs.
    pub cpus: u32,
    /// Scratch disk size in GiB (sparse).
    pub scratch_gib: u32,
    /// Also copy the ELF vmlinux into the L1.
    pub with_vmlinux: bool,
    /// Also bring this host's QEMU (with its libraries and the microvm
    /// firmware) into the L1 ([`crate::qemu_bundle`]).
    pub with_qemu: bool,
    /// More binaries (static) to copy into the L1, each to
    /// `/uvm/bin/<file name>` (such as an older build to compare with).
    pub with_binaries: Vec<PathBuf>,
    /// Stream the L1 boot log too, not only the program's output.
    pub verbose: bool,
    /// How many times to run the program again in a fresh L1 when the L1
    /// kernel reports a lockup on its own console ([`crate::lockup`],
    /// [`crate::l1_console`]) or the L1 falls silent
    /// (`silence_timeout_secs`); any other failure is final.
    pub lockup_retries: u32,
    /// Seconds without a line from the L1 (its kernel console or the
    /// program) after which it is taken for hung and stopped; 0 never.
    pub silence_timeout_secs: u64,
    /// Program name (a binary of this workspace) or path, and its arguments.
    pub program: Vec<String>,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            print_mode: false,
            force_nested: false,
            timeout_secs: 900,
            memory_mib: 4096,
            cpus: 2,
            scratch_gib: 8,
            with_vmlinux: false,
            with_qemu: false,
            with_binaries: Vec::new(),
            verbose: false,
            lockup_retries: 0,
            silence_timeout_secs: 0,
            program: Vec::new(),
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<&String>) -> Result<T> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| XtaskError::Usage(format!("{flag} needs a number")))
}

/// Parses the arguments after `lab`.
pub fn parse(args: &[String]) -> Result<LabOptions> {
    let mut options = LabOptions::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let next = args.get(i + 1);
        match arg {
            "--" => {
                options.program = args[i + 1..].to_vec();
                break;
            }
            "--print-mode" => options.print_mode = true,
            "--nested" => options.force_nested = true,
            "--with-vmlinux" => options.with_vmlinux = true,
            "--with-qemu" => options.with_qemu = true,
            "--verbose" | "-v" => options.verbose = true,
            "--with-binary" => {
                let path =
                    next.ok_or_else(|| XtaskError::Usage("--with-binary needs a path".into()))?;
                options.with_binaries.push(PathBuf::from(path));
                i += 1;
            }
            "--timeout" => {
                options.timeout_secs = number(arg, next)?;
                i += 1;
            }
            "--memory" => {
                options.memory_mib = number(arg, next)?;
                i += 1;
            }
            "--cpus" => {
                options.cpus = number(arg, next)?;
                i += 1;
            }
            "--lockup-retries" => {
                options.lockup_retries = number(arg, next)?;
                i += 1;
            }
            "--silence-timeout" => {
                options.silence_timeout_secs = number(arg, next)?;
                i += 1;
            }
            "--scratch-gib" => {
                options.scratch_gib = number(arg, next)?;
                i += 1;
            }
            other if other.starts_with('-') => {
                return Err(XtaskError::Usage(format!("unknown lab option {other}")));
            }
            _ => {
                options.program = args[i..].to_vec();
                break;
            }
        }
        i += 1;
    }
    if !options.print_mode && options.program.is_empty() {
        return Err(XtaskError::Usage(
            "lab needs a program: cargo xtask lab -- <program> [args]".into(),
        ));
    }
    Ok(options)
}

/// Builds the program statically, or takes a path as is (it must be static
/// for the nested mode).
fn program_binary(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        if !path.is_file() {
            return Err(XtaskError::Other(format!("{name} is not a file")));
        }
        return Ok(path);
    }
    build::build_static(None, name)
}

/// Runs `cargo xtask lab`; returns the program's exit code.
pub fn run(args: &[String]) -> Result<i32> {
    let options = parse(args)?;
    let mode = if options.force_nested {
        Mode::Nested {
            reason: "--nested was given".into(),
        }
    } else {
        host_mode()
    };
    if options.print_mode {
        match &mode {
            Mode::Direct { reason } => println!("direct: {reason}"),
            Mode::Nested { reason } => println!("nested: {reason}"),
        }
        return Ok(0);
    }
    let program = program_binary(&options.program[0])?;
    let (assets, _) = guest::ensure()?;
    match mode {
        Mode::Direct { reason } => {
            eprintln!("xtask lab: direct: {reason}");
            run_direct(&program, &options.program[1..], &assets)
        }
        Mode::Nested { reason } => {
            eprintln!("xtask lab: nested: {reason}");
            build::check_static(&program)?;
            let mut attempt = 0;
            loop {
                match run_nested(&program, &options, &assets) {
                    Err(error @ (XtaskError::L1Lockup { .. } | XtaskError::L1Silent { .. }))
                        if attempt < options.lockup_retries =>
                    {
                        attempt += 1;
                        eprintln!(
                            "xtask lab: {error}\nxtask lab: running the program again in a fresh L1 (retry {attempt} of {})",
                            options.lockup_retries
                        );
                    }
                    other => return other,
                }
            }
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn run_direct(program: &Path, args: &[String], assets: &Assets) -> Result<i32> {
    let scratch = cache::cache_root().join("lab/scratch");
    cmd::mkdir(&scratch)?;
    let status = Command::new(program)
        .args(args)
        .env("UVM_LAB", "1")
        .env("UVM_SCRATCH", &scratch)
        .env("UVM_GUEST_ASSETS", assets.dir.join("assets.json"))
        .status()
        .map_err(XtaskError::io("run", program))?;
    Ok(exit_code(status))
}

/// What to do when QEMU cannot be found or installed.
const QEMU_HINT: &str = "install it with `apt-get install qemu-system-x86`";

/// Installs QEMU with apt if it is missing.
fn ensure_qemu() -> Result<PathBuf> {
    if let Some(qemu) = cmd::which("qemu-system-x86_64") {
        return Ok(qemu);
    }
    eprintln!("xtask lab: qemu-system-x86_64 is missing; installing qemu-system-x86");
    // qemu-utils (qemu-img) is pinned to the same version: a newer one (a
    // backport some hosts come with) breaks the qemu-system-common that
    // qemu-system-x86 needs, and apt would rather fail than move it back.
    let version = apt::candidate_version("qemu-system-x86", QEMU_HINT)?;
    let utils = format!("qemu-utils={version}");
    apt::install_allowing_downgrades(&["qemu-system-x86", &utils])?;
    cmd::require("qemu-system-x86_64", QEMU_HINT)
}

/// The guest assets as the L1 sees them (under `/uvm/guest`).
fn inner_assets(assets: &Assets, with_vmlinux: bool) -> Assets {
    let inside = PathBuf::from("/uvm/guest");
    Assets {
        dir: inside.clone(),
        bzimage: inside.join("vmlinuz"),
        vmlinux: (with_vmlinux && assets.vmlinux.is_some()).then(|| inside.join("vmlinux")),
        initramfs: inside.join("initramfs.cpio"),
        busybox: PathBuf::from("/bin/busybox"),
        modules_dir: PathBuf::from("/lib/modules").join(&assets.kernel_release),
        agent: inside.join("uvm-agent"),
        ..assets.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(XtaskError::io("read", path))
}

/// Where `virtiofsd` lands in the L1 (exported as `UVM_VIRTIOFSD`).
const VIRTIOFSD_INSIDE: &str = "/usr/bin/virtiofsd";

/// This host's `virtiofsd`: `$UVM_VIRTIOFSD`, then `PATH`, then
/// `~/.cargo/bin` (where `cargo install virtiofsd` puts it).
fn find_virtiofsd() -> Option<PathBuf> {
    let from_env = std::env::var_os("UVM_VIRTIOFSD").map(PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("virtiofsd"))
            .find(|p| p.is_file())
    });
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/virtiofsd"));
    [from_env, on_path, cargo_bin]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

/// Builds the L1 initramfs in `dir` and returns its path.
fn l1_initramfs(
    dir: &Path,
    program: &Path,
    options: &LabOptions,
    assets: &Assets,
) -> Result<PathBuf> {
    let wanted = initramfs::parse_module_list(MODULES);
    let (mut archive, _) = initramfs::base(
        &assets.busybox,
        &assets.modules_dir,
        &assets.kernel_release,
        &wanted,
        INIT,
    )?;
    let name = program
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("program")
        .to_owned();
    archive.file(&format!("uvm/bin/{name}"), read(program)?, 0o755);
    for extra in &options.with_binaries {
        build::check_static(extra)?;
        let extra_name = extra.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            XtaskError::Usage(format!("--with-binary {}: no file name", extra.display()))
        })?;
        archive.file(&format!("uvm/bin/{extra_name}"), read(extra)?, 0o755);
        eprintln!(
            "xtask lab: {} in the L1 as /uvm/bin/{extra_name}",
            extra.display()
        );
    }
    let mut script = String::new();
    if options.with_qemu {
        let qemu = ensure_qemu()?;
        let (env, bytes) = qemu_bundle::add(&mut archive, &qemu)?;
        eprintln!(
            "xtask lab: --with-qemu: {} with its libraries and firmware ({:.1} MiB) in the L1",
            qemu.display(),
            bytes as f64 / (1024.0 * 1024.0)
        );
        script.push_str(&env);
    }
    match find_virtiofsd() {
        Some(virtiofsd) => {
            let bytes = qemu_bundle::add_program(&mut archive, &virtiofsd, VIRTIOFSD_INSIDE)?;
            eprintln!(
                "xtask lab: {} with its libraries ({:.1} MiB) in the L1 for shared folders",
                virtiofsd.display(),
                bytes as f64 / (1024.0 * 1024.0)
            );
            script.push_str(&format!("export UVM_VIRTIOFSD={VIRTIOFSD_INSIDE}\n"));
        }
        None => eprintln!(
            "xtask lab: no virtiofsd on this host (cargo install virtiofsd --locked): \
             no shared folders in the L1"
        ),
    }
    script.push_str(&format!("exec /uvm/bin/{}", shell_quote(&name)));
    for arg in &options.program[1..] {
        script.push(' ');
        script.push_str(&shell_quote(arg));
    }
    script.push('\n');
    archive.file("uvm/run.sh", script.into_bytes(), 0o755);
    archive.file("uvm/guest/vmlinuz", read(&assets.bzimage)?, 0o644);
    archive.file("uvm/guest/initramfs.cpio", read(&assets.initramfs)?, 0o644);
    archive.file("uvm/guest/uvm-agent", read(&assets.agent)?, 0o755);
    if options.with_vmlinux
        && let Some(vmlinux) = &assets.vmlinux
    {
        archive.file("uvm/guest/vmlinux", read(vmlinux)?, 0o644);
    }
    let inner = serde_json::to_string_pretty(&inner_assets(assets, options.with_vmlinux))
        .map_err(|e| XtaskError::Other(e.to_string()))?;
    archive.file("uvm/guest/assets.json", inner.into_bytes(), 0o644);
    archive.add(
        "uvm/guest/modules",
        Entry::Symlink {
            target: format!("/lib/modules/{}", assets.kernel_release),
        },
    );
    let path = dir.join("l1-initramfs.cpio");
    initramfs::write(&archive, &path)?;
    Ok(path)
}

/// Creates a sparse raw disk formatted as ext4.
fn scratch_disk(dir: &Path, gib: u32) -> Result<PathBuf> {
    let path = dir.join("scratch.img");
    let file = std::fs::File::create(&path).map_err(XtaskError::io("create", &path))?;
    file.set_len(u64::from(gib) << 30)
        .map_err(XtaskError::io("resize", &path))?;
    drop(file);
    let mkfs = cmd::require("mkfs.ext4", "install it with `apt-get install e2fsprogs`")?;
    cmd::output(
        Command::new(mkfs)
            .args(["-q", "-F", "-L", "uvm-scratch"])
            .arg(&path),
    )?;
    Ok(path)
}

/// Copies QEMU's stderr to ours, dropping the warnings about EPYC features
/// TCG does not emulate (expected, and printed once per vCPU) and its note
/// that it waits for the program's serial port to be connected, unless verbose.
fn forward_qemu_stderr(stderr: std::process::ChildStderr, verbose: bool) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let expected = line.contains("TCG doesn't support requested feature")
            || l1_serial::is_wait_note(&line);
        if verbose || !expected {
            eprintln!("{line}");
        }
    }
}

fn run_nested(program: &Path, options: &LabOptions, assets: &Assets) -> Result<i32> {
    let qemu = ensure_qemu()?;
    // One directory per L1, so that concurrent lab runs do not collide and
    // a retry after a lockup keeps the first L1's console log.
    static L1_COUNT: AtomicU32 = AtomicU32::new(0);
    let nth = L1_COUNT.fetch_add(1, Ordering::Relaxed);
    let name = match nth {
        0 => format!("run-{}", std::process::id()),
        n => format!("run-{}-{n}", std::process::id()),
    };
    let dir = cache::cache_root().join("lab").join(name);
    cmd::mkdir(&dir)?;
    let initrd = l1_initramfs(&dir, program, options, assets)?;
    let scratch = scratch_disk(&dir, options.scratch_gib)?;
    let socket = l1_serial::socket_path(&dir, nth);
    let _ = std::fs::remove_file(&socket);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut cmdline = String::from("console=ttyS0 panic=-1 reboot=k loglevel=4");
    match host_khz(&cpuinfo) {
        Some(khz) => cmdline.push_str(&format!(" tsc_early_khz={khz}")),
        None => eprintln!(
            "xtask lab: warning: no \"cpu MHz\" in /proc/cpuinfo; booting without tsc_early_khz (may hang)"
        ),
    }
    let mut command = Command::new(qemu);
    command
        .args(["-accel", "tcg", "-M", "pc", "-cpu", CPU])
        .args([
            "-m",
            &options.memory_mib.to_string(),
            "-smp",
            &options.cpus.to_string(),
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(l1_serial::qemu_args(&socket))
        .arg("-kernel")
        .arg(&assets.bzimage)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &cmdline])
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=scratch,format=raw,cache=unsafe",
            scratch.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=scratch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("xtask lab: {}", cmd::display(&command));
    let start = Instant::now();
    let mut child = command.spawn().map_err(|e| XtaskError::CommandFailed {
        command: cmd::display(&command),
        status: format!("could not start: {e}"),
        output: String::new(),
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| XtaskError::Other("no QEMU stdout".into()))?;
    if let Some(stderr) = child.stderr.take() {
        let verbose = options.verbose;
        std::thread::spawn(move || forward_qemu_stderr(stderr, verbose));
    }
    // QEMU waits for this connection before the L1 runs.
    let program_port = l1_serial::connect(&socket, &mut child);
    let _ = std::fs::remove_file(&socket);
    let program_port = match program_port {
        Ok(port) => port,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let (tx, rx) = mpsc::channel();
    l1_console::spawn_reader(stdout, Channel::Kernel, tx.clone());
    l1_console::spawn_reader(program_port, Channel::Program, tx);

    let log_path = dir.join("console.log");
    let mut log = std::fs::File::create(&log_path).map_err(XtaskError::io("create", &log_path))?;
    let deadline = start + Duration::from_secs(options.timeout_secs);
    let mut console = Console::new(options.verbose);
    // Set when the L1 is stopped for a lockup or a silence (errors a retry
    // may follow); returned once QEMU is reaped.
    let mut aborted: Option<XtaskError> = None;
    let silence = (options.silence_timeout_secs > 0)
        .then(|| Duration::from_secs(options.silence_timeout_secs));
    let mut last_line = Instant::now();
    loop {
        let now = Instant::now();
        let mut wait = deadline.saturating_duration_since(now);
        if let Some(silence) = silence {
            wait = wait.min((last_line + silence).saturating_duration_since(now));
        }
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(line) => {
                // Either channel is a sign of life.
                last_line = Instant::now();
                let _ = match line.channel {
                    Channel::Kernel => writeln!(log, "{}", line.text),
                    Channel::Program => writeln!(log, "[program] {}", line.text),
                };
                match console.on_line(&line) {
                    Action::Lockup => {
                        eprintln!("{}", line.text);
                        eprintln!("xtask lab: the L1 kernel reports a lockup; killing QEMU");
                        let _ = child.kill();
                        aborted = Some(XtaskError::L1Lockup {
                            line: line.text,
                            seconds: start.elapsed().as_secs_f64(),
                            log: log_path.clone(),
                        });
                        break;
                    }
                    Action::Started => {
                        eprintln!(
                            "xtask lab: L1 booted in {:.1?}; program output follows",
                            start.elapsed()
                        );
                        if console.program_on_kernel_console() {
                            eprintln!(
                                "xtask lab: warning: the L1 has no second serial port, so the program's output \
                                 shares the kernel console: a lockup report the program prints will stop the L1"
                            );
                        }
                    }
                    Action::Show => println!("{}", line.text),
                    Action::Exited(_) | Action::Hold => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                let quiet = last_line.elapsed().as_secs();
                let _ = child.kill();
                if console.exit().is_some() {
                    // The program is done; only the power-off hangs.
                    eprintln!(
                        "xtask lab: the program has exited but the L1 has not powered off after {quiet}s; killing QEMU"
                    );
                } else {
                    eprintln!("xtask lab: no console output for {quiet}s; killing QEMU");
                    aborted = Some(XtaskError::L1Silent {
                        silent_secs: quiet,
                        seconds: start.elapsed().as_secs_f64(),
                        log: log_path.clone(),
                    });
                }
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!(
                    "xtask lab: timed out after {}s; killing QEMU",
                    options.timeout_secs
                );
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child
        .wait()
        .map_err(XtaskError::io("wait for", "qemu-system-x86_64"))?;
    let _ = std::fs::remove_file(&scratch);
    let _ = std::fs::remove_file(&initrd);
    let wall = start.elapsed();
    if let Some(error) = aborted {
        return Err(error);
    }
    match console.exit() {
        Some(code) => {
            eprintln!(
                "xtask lab: program exited with {code}; L1 wall time {wall:.1?} (console log: {})",
                log_path.display()
            );
            Ok(code)
        }
        None => {
            for line in console.tail() {
                eprintln!("  | {line}");
            }
            Err(XtaskError::Other(format!(
                "the L1 guest ended ({status}) after {wall:.1?} without printing {EXIT_MARKER}<code>; full console log: {}",
                log_path.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_mode() {
        let vmx = "processor : 0\nflags\t\t: fpu vme vmx sse\n";
        let pvm = "processor : 0\nflags\t\t: fpu vme sse hypervisor\n";
        assert!(matches!(detect(vmx, true), Mode::Direct { .. }));
        assert!(matches!(detect(vmx, false), Mode::Nested { .. }));
        let Mode::Nested { reason } = detect(pvm, true) else {
            panic!("expected nested")
        };
        assert!(reason.contains("no vmx/svm"), "{reason}");
        assert!(matches!(detect("flags : svm\n", true), Mode::Direct { .. }));
    }

    #[test]
    fn reads_host_khz() {
        assert_eq!(host_khz("cpu MHz\t\t: 2000.000\n"), Some(2_000_000));
        assert_eq!(host_khz("cpu MHz : 2994.373\n"), Some(2_994_373));
        assert_eq!(host_khz("nothing\n"), None);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn parses_options() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let o = parse(&args("--timeout 60 -- kvm-selftest --exits 5")).unwrap();
        assert_eq!(o.timeout_secs, 60);
        assert_eq!(o.program, args("kvm-selftest --exits 5"));
        let o = parse(&args("kvm-selftest --exits 5")).unwrap();
        assert_eq!(o.program, args("kvm-selftest --exits 5"));
        assert!(parse(&args("--print-mode")).unwrap().print_mode);
        let o = parse(&args("--with-qemu -- boot-bench --runs 5")).unwrap();
        assert!(o.with_qemu);
        assert_eq!(o.program, args("boot-bench --runs 5"));
        assert!(!parse(&args("-- x")).unwrap().with_qemu);
        assert_eq!(parse(&args("-- x")).unwrap().lockup_retries, 0);
        let o = parse(&args("--lockup-retries 2 -- x")).unwrap();
        assert_eq!(o.lockup_retries, 2);
        assert_eq!(o.silence_timeout_secs, 0);
        let o = parse(&args("--silence-timeout 300 -- x")).unwrap();
        assert_eq!(o.silence_timeout_secs, 300);
        let o = parse(&args("--with-binary /tmp/a --with-binary /tmp/b -- x")).unwrap();
        assert_eq!(
            o.with_binaries,
            [PathBuf::from("/tmp/a"), PathBuf::from("/tmp/b")]
        );
        assert_eq!(o.program, args("x"));
        assert!(parse(&args("--with-binary")).is_err());
        assert!(parse(&args("")).is_err());
        assert!(parse(&args("--bogus -- x")).is_err());
        assert!(parse(&args("--timeout x -- y")).is_err());
    }
}
