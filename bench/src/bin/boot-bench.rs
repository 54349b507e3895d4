//! `boot-bench [--runs N] [--only kvm|qemu] [--memory-mib M] [--timeout-secs S]
//! [--kvm-same-process] [--kvm-baseline PATH]`: boot-time and memory
//! benchmark of backend-kvm against QEMU microvm (see the `uvm_bench` crate
//! docs). Meant for `cargo xtask lab --with-qemu -- boot-bench`; exits
//! non-zero if any run failed. `--kvm-baseline` adds a third series: the
//! kvm boots of another build of boot-bench (an older commit, built static
//! and brought into the L1 with `cargo xtask lab --with-binary`), so that
//! before and after are measured in the same L1, runs alternated.
//!
//! Runs alternate (kvm 1, qemu 1, kvm 2, ...) so that load from elsewhere
//! on the host hits both VMMs alike. Each kvm boot runs in a fresh process
//! (`--kvm-child`), as each QEMU boot does, unless `--kvm-same-process`
//! (which shows what one long-lived VMM process retains across VMs).

use std::process::ExitCode;
use std::time::Duration;

use uvm_bench::assets::{self, boot_cmdline};
use uvm_bench::kvm::{self, KvmRun};
use uvm_bench::qemu::{self, QemuRun};
use uvm_bench::sample::{Sample, table};
use uvm_bench::{BenchError, Result};

struct Args {
    runs: usize,
    kvm: bool,
    qemu: bool,
    memory_mib: u32,
    timeout: Duration,
    same_process: bool,
    /// `--kvm-baseline PATH`: another boot-bench build's kvm boots.
    baseline: Option<std::path::PathBuf>,
    /// `--kvm-child N`: boot once with backend-kvm, print the sample, exit.
    child: Option<usize>,
}

fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Usage(format!("{flag} needs a number")))
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        kvm: true,
        qemu: true,
        memory_mib: 256,
        timeout: Duration::from_secs(240),
        same_process: false,
        baseline: None,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = value(&arg, it.next())?,
            "--memory-mib" => args.memory_mib = value(&arg, it.next())?,
            "--timeout-secs" => args.timeout = Duration::from_secs(value(&arg, it.next())?),
            "--kvm-same-process" => args.same_process = true,
            "--kvm-baseline" => {
                args.baseline = Some(
                    it.next()
                        .ok_or_else(|| BenchError::Usage("--kvm-baseline needs a path".into()))?
                        .into(),
                );
            }
            "--kvm-child" => args.child = Some(value(&arg, it.next())?),
            "--only" => match it.next().as_deref() {
                Some("kvm") => args.qemu = false,
                Some("qemu") => args.kvm = false,
                _ => return Err(BenchError::Usage("--only kvm|qemu".into())),
            },
            other => {
                return Err(BenchError::Usage(format!(
                    "unknown argument {other:?}; boot-bench [--runs N] [--only kvm|qemu] [--memory-mib M] [--timeout-secs S] [--kvm-same-process] [--kvm-baseline PATH]"
                )));
            }
        }
    }
    if args.runs == 0 {
        return Err(BenchError::Usage("--runs must be at least 1".into()));
    }
    Ok(args)
}

fn record(samples: &mut Vec<Sample>, failures: &mut usize, what: &str, result: Result<Sample>) {
    match result {
        Ok(sample) => {
            println!(
                "boot-bench: {what}: console {:?}, agent {:?}, {:?}, smaps guest rss {:?} KiB{}",
                sample.console_ready,
                sample.agent_answer,
                sample.footprint,
                sample.smaps_guest_rss_kib,
                sample
                    .note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            samples.push(sample);
        }
        Err(e) => {
            println!("boot-bench: {what}: FAILED: {e}");
            *failures += 1;
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("tokio runtime"))
}

/// `--kvm-child N`: one backend-kvm boot in this fresh process.
fn child(args: &Args, number: usize) -> Result<bool> {
    let assets = assets::from_env()?;
    let run = KvmRun {
        assets: &assets,
        memory_mib: args.memory_mib,
        timeout: args.timeout,
    };
    let sample = runtime()?.block_on(kvm::run_once(&run, number))?;
    println!("{}", sample.to_line());
    Ok(true)
}

fn run(args: &Args) -> Result<bool> {
    let assets = assets::from_env()?;
    println!("boot-bench: cmdline {:?}", boot_cmdline(&assets));
    let mut samples = Vec::new();
    let mut failures = 0;
    let runtime = runtime()?;
    let kvm_run = KvmRun {
        assets: &assets,
        memory_mib: args.memory_mib,
        timeout: args.timeout,
    };
    let child_args = vec![
        "--memory-mib".to_owned(),
        args.memory_mib.to_string(),
        "--timeout-secs".to_owned(),
        args.timeout.as_secs().to_string(),
    ];
    let qemu_run = match (args.qemu, qemu::find_qemu()) {
        (false, _) => None,
        (true, None) => {
            println!(
                "boot-bench: qemu: FAILED: no qemu-system-x86_64 (set UVM_QEMU, or run `cargo xtask lab --with-qemu`)"
            );
            failures += 1;
            None
        }
        (true, Some(binary)) => Some(QemuRun {
            assets: &assets,
            qemu: binary,
            firmware: qemu::find_firmware(),
            memory_mib: args.memory_mib,
            timeout: args.timeout,
        }),
    };
    if let Some(run) = &qemu_run {
        println!(
            "boot-bench: qemu: {}",
            uvm_bench::agent::display_command(&qemu::command(run, qemu::child_cid(1)))
        );
    }
    for n in 1..=args.runs {
        if args.kvm {
            let result = if args.same_process {
                runtime.block_on(kvm::run_once(&kvm_run, n))
            } else {
                kvm::run_in_child(n, &child_args)
            };
            record(&mut samples, &mut failures, &format!("kvm run {n}"), result);
        }
        if let Some(baseline) = args.baseline.as_deref().filter(|_| args.kvm) {
            let result = kvm::run_baseline(baseline, n, &child_args);
            record(
                &mut samples,
                &mut failures,
                &format!("kvm-baseline run {n}"),
                result,
            );
        }
        if let Some(run) = &qemu_run {
            let result = qemu::run_once(run, n);
            record(
                &mut samples,
                &mut failures,
                &format!("qemu run {n}"),
                result,
            );
        }
    }
    samples.sort_by_key(|s| (s.vmm as u8, s.run));
    println!();
    print!("{}", table(&samples));
    if failures > 0 {
        println!("boot-bench: {failures} run(s) failed");
    }
    Ok(failures == 0)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("boot-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.child {
        Some(n) => child(&args, n),
        None => run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("boot-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
