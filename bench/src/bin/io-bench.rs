//! `io-bench [--runs N] [--only kvm|qemu] [--figures disk,vsock,net]
//! [--size-mib M] [--rand-secs S] [--queue-depth Q] [--vsock-mib M]
//! [--net-mib M] [--memory-mib M] [--timeout-secs S] [--kvm-baseline PATH]
//! [--print-samples]`: device throughput
//! of backend-kvm against `qemu-system-x86_64 -M pc -accel kvm` on the same
//! guest (see `uvm_bench::io`). Meant for
//! `cargo xtask lab --with-qemu -- io-bench --runs 5`.
//!
//! Runs alternate (kvm 1, qemu 1, kvm 2, ...), each in a freshly booted
//! guest; QEMU runs when it is found (`UVM_QEMU`, as `--with-qemu` sets
//! it). Prints the medians as a markdown table; exits non-zero if any
//! figure of any run failed.
//!
//! `--kvm-baseline PATH` adds a third series: another io-bench build (of
//! older VMM code, brought into the L1 with `cargo xtask lab --with-binary`)
//! runs each run's backend-kvm figures in a child process, between this
//! build's and QEMU's (kvm 1, baseline 1, qemu 1, kvm 2, ...), so two
//! builds compare in one L1. The child is run with `--print-samples`, which
//! prints each sample as an `io-bench-sample:` line for the parent.

use std::process::ExitCode;
use std::time::Duration;

use uvm_bench::assets::{self, GuestAssets, boot_cmdline};
use uvm_bench::hotplug;
use uvm_bench::io::args::{self, Args};
use uvm_bench::io::guest::IoGuest;
use uvm_bench::io::measure::{self, Plan, RunResult};
use uvm_bench::io::report::{Sample, table};
use uvm_bench::io::watchdog::Watchdog;
use uvm_bench::kvm::KvmRun;
use uvm_bench::{BenchError, Result};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("tokio runtime"))
}

fn plan(args: &Args) -> Plan {
    Plan {
        groups: args.groups.clone(),
        disk_bytes: args.size_mib << 20,
        rand: args.rand,
        queue_depth: args.queue_depth,
        vsock_bytes: args.vsock_mib << 20,
        net_bytes: args.net_mib << 20,
    }
}

/// How long stopping a VM may take before the watchdog gives up.
const STOP_LIMIT: Duration = Duration::from_secs(90);

/// Measures `plan` on the guest `booted`, hands the result to
/// `before_stop` and stops the guest. (The last run prints the final table
/// there: stopping a nested guest has made the L1 kernel report a soft
/// lockup, which ends the lab before anything printed after it.)
async fn one_run(
    booted: Result<IoGuest>,
    vmm: &str,
    plan: &Plan,
    run: usize,
    dir: &std::path::Path,
    watchdog: &Watchdog,
    before_stop: impl FnOnce(&RunResult),
) -> RunResult {
    let mut guest = match booted {
        Ok(guest) => guest,
        Err(e) => {
            let line = format!("{vmm} run {run}: no guest: {e}");
            eprintln!("io-bench: {line}");
            let result = RunResult {
                samples: Vec::new(),
                errors: vec![line],
            };
            before_stop(&result);
            return result;
        }
    };
    eprintln!(
        "io-bench: {vmm} run {run}: the agent answered {:.1} s after the start",
        guest.booted.as_secs_f64()
    );
    let result = measure::run(&mut guest, plan, run, dir, watchdog).await;
    before_stop(&result);
    watchdog.phase(format!("{vmm} run {run}: stop"), STOP_LIMIT);
    let exits = guest.exit_counters().await;
    if !exits.is_empty() {
        let mut top: Vec<_> = exits.into_iter().filter(|(_, n)| *n > 0).collect();
        top.sort_by_key(|b| std::cmp::Reverse(b.1));
        top.truncate(8);
        eprintln!("io-bench: {vmm} run {run}: exits since boot: {top:?}");
    }
    guest.shut_down().await;
    watchdog.idle();
    result
}

/// The table of medians, what the exits column counts, and the failures.
fn final_report(
    args: &Args,
    vmms: &[&'static str],
    samples: &[Sample],
    errors: &[String],
) -> String {
    let mut out = format!(
        "\nio-bench: medians of {} run(s); disk {} MiB, random reads {} s, vsock {} MiB, frames {} MiB; guest {} MiB, 1 vCPU\n\n",
        args.runs,
        args.size_mib,
        args.rand.as_secs(),
        args.vsock_mib,
        args.net_mib,
        args.memory_mib
    );
    out.push_str(&table(
        samples,
        vmms,
        &args.groups,
        args.runs,
        args.queue_depth,
    ));
    out.push_str(
        "\nexits/s: the KVM_RUN exits backend-kvm handled during the figure (`exits.total` of \
         stats()); queue kicks on ioeventfds and interrupts through irqfds stay in the host \
         kernel and are not among them (each figure's log line gives them per second as \
         virtio.kicks and virtio.interrupts). QEMU's are not counted (n/a).\n",
    );
    if !errors.is_empty() {
        out.push_str("\nfailures:\n");
        for line in errors {
            out.push_str(&format!("- {line}\n"));
        }
    }
    out
}

/// Prints [`final_report`] of `samples` and `errors` with those of `last`
/// (the run whose guest is about to stop) added.
fn print_final(
    args: &Args,
    vmms: &[&'static str],
    samples: &[Sample],
    errors: &[String],
    last: &RunResult,
) {
    let mut all = samples.to_vec();
    all.extend(last.samples.iter().cloned());
    let mut failed = errors.to_vec();
    failed.extend(last.errors.iter().cloned());
    print!("{}", final_report(args, vmms, &all, &failed));
}

/// One bench session: what every run shares, and what the runs gave.
struct Session<'a> {
    args: &'a Args,
    vmms: Vec<&'static str>,
    plan: Plan,
    dir: &'a std::path::Path,
    runtime: tokio::runtime::Runtime,
    watchdog: Watchdog,
    samples: Vec<Sample>,
    errors: Vec<String>,
}

impl Session<'_> {
    /// Boots a guest of `vmm` with `boot`, measures it (run `run`; the
    /// last run prints the final table before its guest stops) and keeps
    /// what it gave.
    fn measure(
        &mut self,
        vmm: &'static str,
        run: usize,
        last: bool,
        boot: impl std::future::Future<Output = Result<IoGuest>>,
    ) {
        let boot_limit = self.args.boot_timeout + Duration::from_secs(60);
        self.watchdog
            .phase(format!("{vmm} run {run}: boot"), boot_limit);
        let this = &*self;
        let result = this.runtime.block_on(async {
            let booted = boot.await;
            one_run(
                booted,
                vmm,
                &this.plan,
                run,
                this.dir,
                &this.watchdog,
                |r| {
                    // A child's samples go out before its guest stops: a
                    // stop has taken the L1 down before now.
                    if this.args.print_samples {
                        for sample in &r.samples {
                            println!("{}", sample.to_line());
                        }
                    }
                    if last {
                        print_final(this.args, &this.vmms, &this.samples, &this.errors, r);
                    }
                },
            )
            .await
        });
        self.samples.extend(result.samples);
        self.errors.extend(result.errors);
    }

    /// Runs the io-bench at `baseline` for backend-kvm alone, one run with
    /// this plan, in a child process, and keeps its samples as run `run`
    /// of [`BASELINE`] (the last run prints the final table after it).
    fn measure_baseline(&mut self, baseline: &std::path::Path, run: usize, last: bool) {
        let limit = self.args.boot_timeout + Duration::from_secs(900);
        self.watchdog.phase(format!("{BASELINE} run {run}"), limit);
        let output = std::process::Command::new(baseline)
            .args(self.args.child_arguments())
            .stderr(std::process::Stdio::inherit())
            .output();
        self.watchdog.idle();
        let mut result = RunResult {
            samples: Vec::new(),
            errors: Vec::new(),
        };
        match output {
            Ok(output) => {
                let stdout = String::from_utf8_lossy(&output.stdout);
                result.samples = stdout
                    .lines()
                    .filter_map(|line| Sample::from_line(line, BASELINE, run))
                    .collect();
                if !output.status.success() || result.samples.is_empty() {
                    result.errors.push(format!(
                        "{BASELINE} run {run}: {} ({} samples)",
                        output.status,
                        result.samples.len()
                    ));
                }
            }
            Err(e) => result
                .errors
                .push(format!("{BASELINE} run {run}: {}: {e}", baseline.display())),
        }
        for line in &result.errors {
            eprintln!("io-bench: {line}");
        }
        if last {
            print_final(self.args, &self.vmms, &self.samples, &self.errors, &result);
        }
        self.samples.extend(result.samples);
        self.errors.extend(result.errors);
    }
}

/// The name the baseline build's figures go under.
const BASELINE: &str = "kvm-baseline";

fn run(args: &Args) -> Result<bool> {
    let assets: GuestAssets = assets::from_env()?;
    eprintln!("io-bench: cmdline {:?}", boot_cmdline(&assets));
    let dir = tempfile::Builder::new()
        .prefix("io-bench-")
        .tempdir()
        .map_err(BenchError::io("create a temporary directory"))?;
    let qemu_binary = if args.qemu {
        let found = uvm_bench::qemu::find_qemu();
        if found.is_none() {
            eprintln!(
                "io-bench: qemu: not measured (no UVM_QEMU; run `cargo xtask lab --with-qemu`)"
            );
        }
        found
    } else {
        None
    };
    let mut vmms = Vec::new();
    if args.kvm {
        vmms.push(hotplug::kvm::VMM);
    }
    let baseline = args.baseline.as_deref().filter(|_| args.kvm);
    if baseline.is_some() {
        vmms.push(BASELINE);
    }
    if qemu_binary.is_some() {
        vmms.push(hotplug::qemu::VMM);
    } else if !args.kvm {
        return Err(BenchError::Vm(
            "no qemu-system-x86_64 (set UVM_QEMU)".into(),
        ));
    }
    let mut session = Session {
        args,
        vmms,
        plan: plan(args),
        dir: dir.path(),
        runtime: runtime()?,
        watchdog: Watchdog::start().map_err(BenchError::io("start the watchdog"))?,
        samples: Vec::new(),
        errors: Vec::new(),
    };
    for run in 1..=args.runs {
        if args.kvm {
            let guest = KvmRun {
                assets: &assets,
                memory_mib: args.memory_mib,
                timeout: args.boot_timeout,
            };
            let last = run == args.runs && qemu_binary.is_none() && baseline.is_none();
            session.measure(hotplug::kvm::VMM, run, last, IoGuest::boot_kvm(&guest));
        }
        if let Some(baseline) = baseline {
            let last = run == args.runs && qemu_binary.is_none();
            session.measure_baseline(baseline, run, last);
        }
        if let Some(binary) = &qemu_binary {
            let guest = hotplug::qemu::QemuGuest {
                assets: &assets,
                qemu: binary.clone(),
                firmware: uvm_bench::qemu::find_firmware(),
                memory_mib: args.memory_mib,
                timeout: args.boot_timeout,
                runs: 1,
            };
            let sockets = dir.path().join(format!("qemu-{run}"));
            std::fs::create_dir_all(&sockets)
                .map_err(BenchError::io(format!("create {}", sockets.display())))?;
            let last = run == args.runs;
            session.measure(
                hotplug::qemu::VMM,
                run,
                last,
                IoGuest::boot_qemu(&guest, &sockets),
            );
        }
        if run < args.runs {
            // So far, in case a later run hangs and the watchdog ends us.
            eprint!(
                "io-bench: after run {run}:\n{}",
                table(
                    &session.samples,
                    &session.vmms,
                    &args.groups,
                    run,
                    args.queue_depth
                )
            );
        }
    }
    Ok(session.errors.is_empty())
}

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("io-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("io-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
