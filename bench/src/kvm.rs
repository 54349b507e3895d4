//! backend-kvm boots: create through [`KvmBackend`], `start()`, then wait
//! for `UVM_GUEST_READY` on the console tap and (once backend-kvm offers a
//! guest probe over vsock) for the agent's first answer.

use std::time::{Duration, Instant};

use uvm_api::{ConsoleSink, StopMode, Uvm, UvmConfig};
use uvm_backend_kvm::{KvmBackend, KvmUvm};

use crate::assets::{GuestAssets, READY, boot_cmdline};
use crate::error::{BenchError, Result};
use crate::sample::{Sample, Vmm};
use crate::smaps;

/// What a kvm run boots.
#[derive(Debug, Clone)]
pub struct KvmRun<'a> {
    /// The guest.
    pub assets: &'a GuestAssets,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// How long to wait for the guest.
    pub timeout: Duration,
}

/// Creates (does not start) a VM booting `run`'s guest, named `id`.
pub(crate) fn create(run: &KvmRun<'_>, id: &str) -> Result<KvmUvm> {
    let config = UvmConfig::builder(id)
        .vcpus(1)
        .memory_mib(u64::from(run.memory_mib))
        .kernel(&run.assets.kernel)
        .initrd(&run.assets.initrd)
        .cmdline(boot_cmdline(run.assets))
        .console(ConsoleSink::Discard)
        .build()
        .map_err(BenchError::uvm("configuration"))?;
    KvmBackend::new()
        .create_vm(config)
        .map_err(BenchError::uvm("create"))
}

/// Asks the guest probe (the agent over vsock) for the uptime until it
/// answers; `Ok(None)` when backend-kvm offers no guest probe.
async fn agent_answer(
    vm: &KvmUvm,
    started: Instant,
    timeout: Duration,
) -> Result<Option<Duration>> {
    let Some(probe) = vm.guest_probe() else {
        return Ok(None);
    };
    loop {
        match probe.uptime().await {
            Ok(_) => return Ok(Some(started.elapsed())),
            Err(e) if started.elapsed() >= timeout => {
                return Err(BenchError::Vm(format!("the agent did not answer: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn measure(vm: &KvmUvm, run: &KvmRun<'_>, number: usize) -> Result<Sample> {
    let started = Instant::now();
    vm.start().await.map_err(BenchError::uvm("start"))?;
    let console = async {
        vm.wait_for_console(READY, run.timeout)
            .await
            .map(|_| started.elapsed())
            .map_err(BenchError::uvm("console"))
    };
    let both = async { tokio::join!(console, agent_answer(vm, started, run.timeout)) };
    let (console, agent) = tokio::select! {
        r = both => r,
        status = vm.wait() => {
            return Err(BenchError::Vm(format!("the VM stopped while booting: {status}")));
        }
    };
    let console = console?;
    let agent = agent?;
    let guest_kib = u64::from(run.memory_mib) * 1024;
    let mut footprint =
        smaps::read_footprint(None, guest_kib).map_err(BenchError::io("read /proc/self/smaps"))?;
    let smaps_guest = footprint.guest_rss_kib;
    let stats = vm.stats().await.map_err(BenchError::uvm("stats"))?;
    let exits: Vec<String> = stats
        .counters
        .iter()
        .filter(|(name, count)| name.starts_with("exits.") && **count > 0)
        .map(|(name, count)| format!("{name}={count}"))
        .collect();
    eprintln!("boot-bench: kvm run {number}: {}", exits.join(" "));
    if let Some(bytes) = stats.memory.host_resident_bytes {
        footprint.guest_rss_kib = bytes / 1024;
    }
    let note = match agent {
        Some(_) => "guest RSS: mincore".to_owned(),
        None => "no guest_probe() in backend-kvm yet: console only".to_owned(),
    };
    Ok(Sample {
        vmm: Vmm::Kvm,
        run: number,
        console_ready: Some(console),
        agent_answer: agent,
        footprint: Some(footprint),
        smaps_guest_rss_kib: Some(smaps_guest),
        exits: stats.counters.get("exits.total").copied(),
        unpack: crate::kernel_log::unpack_time(vm.console_output().lines()),
        note: Some(note),
    })
}

/// The last `lines` lines of `vm`'s console.
pub(crate) fn console_tail(vm: &KvmUvm, lines: usize) -> String {
    let text = vm.console_output();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs [`run_once`] in a fresh process (this executable with
/// `--kvm-child <number>` and `extra` arguments), so that each boot is
/// measured in a new VMM process, like each QEMU boot; returns its sample.
pub fn run_in_child(number: usize, extra: &[String]) -> Result<Sample> {
    let exe = std::env::current_exe().map_err(BenchError::io("current_exe"))?;
    run_with(&exe, number, extra)
}

/// Like [`run_in_child`] with another build of boot-bench at `exe` (one
/// that prints its sample the same way); the sample is labelled
/// [`Vmm::KvmBaseline`].
pub fn run_baseline(exe: &std::path::Path, number: usize, extra: &[String]) -> Result<Sample> {
    let mut sample = run_with(exe, number, extra)?;
    sample.vmm = Vmm::KvmBaseline;
    Ok(sample)
}

fn run_with(exe: &std::path::Path, number: usize, extra: &[String]) -> Result<Sample> {
    let output = std::process::Command::new(exe)
        .arg("--kvm-child")
        .arg(number.to_string())
        .args(extra)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(BenchError::io(format!("run {}", exe.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    Sample::from_output(&stdout).ok_or_else(|| {
        BenchError::Vm(format!(
            "the kvm child process ({}) reported no sample:\n{stdout}",
            output.status
        ))
    })
}

/// Boots the guest once with backend-kvm, measures, and force-stops it.
pub async fn run_once(run: &KvmRun<'_>, number: usize) -> Result<Sample> {
    let vm = create(run, &format!("bench-kvm-{number}"))?;
    let result = measure(&vm, run, number).await;
    if result.is_err() {
        eprintln!(
            "boot-bench: kvm run {number}: guest console tail:\n{}",
            console_tail(&vm, 30)
        );
    }
    // Stopping a VM that already ended is InvalidState: not a failure here.
    let _ = vm.stop(StopMode::Force).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), vm.wait()).await;
    result
}
