//! `kvm-boot-check`: boots the Debian test guest through the public `Uvm`
//! API of the kvm backend and checks its lifecycle end to end. Meant for
//! `cargo xtask lab -- kvm-boot-check` (it reads `UVM_GUEST_ASSETS`).
//!
//! 1. Boot with the agent, wait for `UVM_GUEST_READY` on the console, report
//!    the time from `start()`, then a graceful stop (power button, 15 s):
//!    the guest's acpid powers off, so the reason must be `Shutdown`.
//!    Before the stop, when the backend serves shared folders, a virtio-fs
//!    share is hot-added and the guest must list its file through the agent.
//! 2. Boot with `uvm.noagent=1`: `/init` runs `poweroff -f` after
//!    `UVM_GUEST_READY`; the reason must be `Shutdown` (ACPI S5).
//!
//! `--console` boots the first guest with `loglevel=7` and prints its
//! console once it is ready (to see what the guest kernel chose: clock
//! event devices, drivers).
//!
//! Exit code 0 when the guest booted both times and powered off through S5
//! both times (power button, then `poweroff -f`);
//! 1 otherwise (the guest console is printed on failure).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use uvm_api::{ConsoleSink, ShareKind, SharedFolder, StopMode, StopReason, Uvm, UvmConfig};
use uvm_backend_kvm::{KvmBackend, KvmUvm};
use uvm_tools::guest_assets::GuestAssets;
use uvm_tools::lab_main::run_with_guest_assets;

const READY: &str = "UVM_GUEST_READY";
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn create(assets: &GuestAssets, id: &str, extra: &str) -> Result<KvmUvm, String> {
    let cmdline = assets.recommended_cmdline(extra);
    println!("kvm-boot-check: {id}: cmdline {cmdline:?}");
    let config = UvmConfig::builder(id)
        .vcpus(1)
        .memory_mib(512)
        .kernel(&assets.kernel)
        .initrd(&assets.initrd)
        .cmdline(cmdline)
        .console(ConsoleSink::Discard)
        .build()
        .map_err(|e| e.to_string())?;
    KvmBackend::new()
        .create_vm(config)
        .map_err(|e| e.to_string())
}

fn dump(vm: &KvmUvm) {
    println!("----- guest console ({}) -----", vm.id());
    println!("{}", vm.console_output());
    println!("----- end of guest console -----");
}

async fn boot(vm: &KvmUvm) -> Result<Duration, String> {
    let started = Instant::now();
    vm.start().await.map_err(|e| format!("start: {e}"))?;
    tokio::select! {
        r = vm.wait_for_console(READY, BOOT_TIMEOUT) => {
            r.map_err(|e| format!("{e}"))?;
            Ok(started.elapsed())
        }
        status = vm.wait() => Err(format!("the VM stopped before {READY}: {status}")),
    }
}

/// Hot-adds a virtio-fs share and waits until the guest lists its file.
async fn hot_add_share(vm: &KvmUvm) -> Result<(), String> {
    let Some(shares) = vm.shared_folders() else {
        println!("kvm-boot-check: no virtiofsd: share hot-add skipped");
        return Ok(());
    };
    let probe = vm.guest_probe().ok_or("no guest probe")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("hello.txt"), b"hello").map_err(|e| e.to_string())?;
    let added = Instant::now();
    shares
        .add_share(SharedFolder {
            kind: ShareKind::VirtioFs,
            name: "bootcheck".into(),
            host_path: dir.path().to_path_buf(),
            read_only: true,
            allowed_files: Vec::new(),
        })
        .await
        .map_err(|e| format!("add_share: {e}"))?;
    let returned = added.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        match probe.list_share("bootcheck").await {
            Ok(files) if files.iter().any(|f| f == "hello.txt") => {
                println!(
                    "kvm-boot-check: share hot-added (call {returned:.3?}), guest lists {files:?} {:.3?} after the call returned",
                    added.elapsed() - returned
                );
                return Ok(());
            }
            Ok(files) => last = format!("{files:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!(
        "the guest never listed the hot-added share: {last}"
    ))
}

async fn phase_graceful(assets: &GuestAssets, console: bool) -> Result<StopReason, String> {
    let extra = if console { "loglevel=7" } else { "" };
    let vm = create(assets, "boot-graceful", extra)?;
    let ready = match boot(&vm).await {
        Ok(t) => t,
        Err(e) => {
            dump(&vm);
            let _ = vm.stop(StopMode::Force).await;
            return Err(e);
        }
    };
    println!("kvm-boot-check: UVM_GUEST_READY {ready:.3?} after start()");
    if console {
        dump(&vm);
    }
    let stats = vm.stats().await.map_err(|e| e.to_string())?;
    println!(
        "kvm-boot-check: at ready: vCPU time {:.3?}, resident {:?} bytes, exits {:?}",
        stats.processor.total_runtime, stats.memory.host_resident_bytes, stats.counters
    );
    if let Err(e) = hot_add_share(&vm).await {
        dump(&vm);
        let _ = vm.stop(StopMode::Force).await;
        return Err(e);
    }
    let t = Instant::now();
    vm.stop(StopMode::Graceful {
        timeout: Duration::from_secs(15),
    })
    .await
    .map_err(|e| e.to_string())?;
    let status = vm.wait().await;
    println!(
        "kvm-boot-check: graceful stop -> {status} after {:.3?}",
        t.elapsed()
    );
    if status.reason != StopReason::Shutdown {
        println!(
            "kvm-boot-check: the guest did not answer the ACPI power button (the test initramfs loads `button` + `evdev` and runs busybox acpid, whose /etc/acpi/PWRF/00000080 powers off)"
        );
        let tail: String = vm
            .console_output()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        println!("{tail}");
        return Err(format!("graceful stop: expected Shutdown, got {status}"));
    }
    Ok(status.reason)
}

async fn phase_poweroff(assets: &GuestAssets) -> Result<(), String> {
    let vm = create(assets, "boot-poweroff", "uvm.noagent=1")?;
    let result = async {
        let ready = boot(&vm).await?;
        println!("kvm-boot-check: UVM_GUEST_READY {ready:.3?} after start() (no agent)");
        let status = tokio::time::timeout(Duration::from_secs(60), vm.wait())
            .await
            .map_err(|_| "the guest did not power off within 60 s".to_string())?;
        println!("kvm-boot-check: guest poweroff -f -> {status}");
        if status.reason == StopReason::Shutdown {
            Ok(())
        } else {
            Err(format!("expected shutdown, got {status}"))
        }
    }
    .await;
    if result.is_err() {
        dump(&vm);
        let _ = vm.stop(StopMode::Force).await;
    }
    result
}

fn main() -> ExitCode {
    let console = std::env::args().skip(1).any(|a| a == "--console");
    run_with_guest_assets("kvm-boot-check", |assets| async move {
        let graceful = phase_graceful(&assets, console).await;
        let poweroff = phase_poweroff(&assets).await;
        println!("kvm-boot-check: graceful: {graceful:?}; poweroff: {poweroff:?}");
        match (graceful, poweroff) {
            (Ok(_), Ok(())) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    })
}
