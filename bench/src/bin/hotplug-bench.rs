//! `hotplug-bench [--runs N] [--only scsi,nic,pmem,share] [--vmm kvm|qemu|both]
//! [--json] [--memory-mib M] [--timeout-secs S] [--poll-gap-us U]
//! [--seen-timeout-secs S]`: hot-add latency of a running guest (see
//! `uvm_bench::hotplug`). Meant for
//! `cargo xtask lab [--with-qemu] -- hotplug-bench --runs 5`.
//!
//! backend-kvm always runs (unless `--vmm qemu`); QEMU runs when it is
//! found (`UVM_QEMU`, as `--with-qemu` sets it) or `--vmm` asks for it.
//! Each VMM boots one guest, measures every kind on it and is stopped
//! before the next VMM boots. Exits non-zero if anything failed.

use std::process::ExitCode;
use std::time::Duration;

use uvm_bench::assets::{self, boot_cmdline};
use uvm_bench::hotplug::device::{MAX_RUNS, Workspace};
use uvm_bench::hotplug::kvm;
use uvm_bench::hotplug::poll::Poll;
use uvm_bench::hotplug::report::{self, KindReport};
use uvm_bench::hotplug::run::{self, Plan};
use uvm_bench::hotplug::{Kind, qemu};
use uvm_bench::kvm::KvmRun;
use uvm_bench::{BenchError, Result};

const USAGE: &str = "hotplug-bench [--runs N] [--only scsi,nic,pmem,share] [--vmm kvm|qemu|both] \
     [--json] [--memory-mib M] [--timeout-secs S] [--poll-gap-us U] [--seen-timeout-secs S]";

struct Args {
    plan: Plan,
    kvm: bool,
    /// `Some(true)`: QEMU required; `None`: when found.
    qemu: Option<bool>,
    json: bool,
    memory_mib: u32,
    boot_timeout: Duration,
}

fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Usage(format!("{flag} needs a number")))
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        plan: Plan {
            kinds: Kind::ALL.to_vec(),
            runs: 5,
            poll: Poll {
                gap: Duration::ZERO,
                timeout: Duration::from_secs(30),
            },
            removal_timeout: Duration::from_secs(30),
        },
        kvm: true,
        qemu: None,
        json: false,
        memory_mib: 512,
        boot_timeout: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.plan.runs = value(&arg, it.next())?,
            "--only" => {
                let list = it
                    .next()
                    .ok_or_else(|| BenchError::Usage("--only needs a list of kinds".into()))?;
                args.plan.kinds = Kind::parse_list(&list)?;
            }
            "--vmm" => match it.next().as_deref() {
                Some("kvm") => (args.kvm, args.qemu) = (true, Some(false)),
                Some("qemu") => (args.kvm, args.qemu) = (false, Some(true)),
                Some("both") => (args.kvm, args.qemu) = (true, Some(true)),
                _ => return Err(BenchError::Usage("--vmm kvm|qemu|both".into())),
            },
            "--json" => args.json = true,
            "--memory-mib" => args.memory_mib = value(&arg, it.next())?,
            "--timeout-secs" => args.boot_timeout = Duration::from_secs(value(&arg, it.next())?),
            "--poll-gap-us" => args.plan.poll.gap = Duration::from_micros(value(&arg, it.next())?),
            "--seen-timeout-secs" => {
                let secs = value(&arg, it.next())?;
                args.plan.poll.timeout = Duration::from_secs(secs);
                args.plan.removal_timeout = Duration::from_secs(secs);
            }
            other => {
                return Err(BenchError::Usage(format!(
                    "unknown argument {other:?}; {USAGE}"
                )));
            }
        }
    }
    if !(1..=MAX_RUNS).contains(&args.plan.runs) {
        return Err(BenchError::Usage(format!(
            "--runs must be in 1..={MAX_RUNS}"
        )));
    }
    Ok(args)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("tokio runtime"))
}

/// A report per kind saying the VMM could not be measured at all.
fn all_failed(vmm: &str, kinds: &[Kind], error: &BenchError) -> Vec<KindReport> {
    kinds
        .iter()
        .map(|&kind| {
            let mut report = KindReport::new(vmm, kind);
            report.errors.push(format!("no guest: {error}"));
            report
        })
        .collect()
}

async fn run_kvm(args: &Args, guest: &KvmRun<'_>, files: &Workspace) -> Vec<KindReport> {
    match kvm::boot(guest, &args.plan.kinds).await {
        Ok((mut target, booted)) => {
            eprintln!(
                "hotplug-bench: backend-kvm: the agent answered {:.2} s after start()",
                booted.as_secs_f64()
            );
            let reports = run::measure(&mut target, &args.plan, files).await;
            target.shut_down().await;
            reports
        }
        Err(e) => {
            eprintln!("hotplug-bench: backend-kvm: FAILED: {e}");
            all_failed(kvm::VMM, &args.plan.kinds, &e)
        }
    }
}

async fn run_qemu(args: &Args, guest: &qemu::QemuGuest<'_>, files: &Workspace) -> Vec<KindReport> {
    match qemu::QemuTarget::boot(guest, &args.plan.kinds, files.path()).await {
        Ok((mut target, booted)) => {
            eprintln!(
                "hotplug-bench: qemu: the agent answered {:.2} s after spawning QEMU",
                booted.as_secs_f64()
            );
            let reports = run::measure(&mut target, &args.plan, files).await;
            target.shut_down();
            reports
        }
        Err(e) => {
            eprintln!("hotplug-bench: qemu: FAILED: {e}");
            all_failed(qemu::VMM, &args.plan.kinds, &e)
        }
    }
}

fn run(args: &Args) -> Result<bool> {
    let assets = assets::from_env()?;
    eprintln!("hotplug-bench: cmdline {:?}", boot_cmdline(&assets));
    let files = Workspace::new()?;
    let runtime = runtime()?;
    let mut reports = Vec::new();
    if args.kvm {
        let guest = KvmRun {
            assets: &assets,
            memory_mib: args.memory_mib,
            timeout: args.boot_timeout,
        };
        reports.extend(runtime.block_on(run_kvm(args, &guest, &files)));
    }
    let binary = uvm_bench::qemu::find_qemu();
    match (args.qemu, binary) {
        (Some(false), _) => {}
        (None, None) => eprintln!(
            "hotplug-bench: qemu: not measured (no UVM_QEMU; run `cargo xtask lab --with-qemu`)"
        ),
        (Some(true), None) => {
            let error = BenchError::Vm("no qemu-system-x86_64 (set UVM_QEMU)".into());
            reports.extend(all_failed(qemu::VMM, &args.plan.kinds, &error));
        }
        (_, Some(binary)) => {
            let guest = qemu::QemuGuest {
                assets: &assets,
                qemu: binary,
                firmware: uvm_bench::qemu::find_firmware(),
                memory_mib: args.memory_mib,
                timeout: args.boot_timeout,
                runs: args.plan.runs,
            };
            eprintln!(
                "hotplug-bench: qemu: {}",
                uvm_bench::agent::display_command(&qemu::command(
                    &guest,
                    &args.plan.kinds,
                    &qemu::Paths::in_dir(files.path())
                ))
            );
            reports.extend(runtime.block_on(run_qemu(args, &guest, &files)));
        }
    }
    if args.json {
        println!("{}", report::json(&reports));
    } else {
        println!();
        print!("{}", report::runs_table(&reports));
        println!();
        print!("{}", report::summary_table(&reports));
    }
    Ok(!reports.iter().any(KindReport::failed))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("hotplug-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hotplug-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
