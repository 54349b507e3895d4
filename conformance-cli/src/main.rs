//! `uvm-conformance`: runs the conformance suite against a registered backend
//! and prints every check with its outcome.
//!
//! ```text
//! uvm-conformance --backend mock [--only AREA]... [--format table|json|junit]
//! ```
//!
//! The report starts with the backend's capability matrix. Exits 0 if no
//! check failed (checks that ended unclaimed or skipped are not failures), 1
//! if any did, 2 if the suite could not run (unknown backend, backend not
//! available here, bad arguments), 3 if the run stalled (every runtime thread
//! blocked; the threads are printed).

mod backends;
mod mock_profile;
mod watchdog;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use uvm_api::UvmConfig;
use uvm_conformance::{Area, Factory, Report, RunOptions, all_checks, run_suite};

/// Fewest runtime worker threads, so that one or two blocked by a hung
/// check leave others to run the rest.
const MIN_WORKERS: usize = 4;

/// How long the runtime's tasks get to end after the report is printed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The capability matrix, a table of every check, the failures in full,
    /// and a summary line.
    Table,
    /// The report as JSON.
    Json,
    /// The report as JUnit XML.
    Junit,
}

/// Runs the uvm conformance suite against a backend.
#[derive(Debug, Parser)]
#[command(name = "uvm-conformance", version, about)]
struct Cli {
    /// The backend's registry name (for example `mock`).
    #[arg(long, short, required_unless_present = "list")]
    backend: Option<String>,
    /// Only the checks of these areas (repeat, or separate with commas).
    #[arg(long, value_delimiter = ',', value_parser = parse_area)]
    only: Vec<Area>,
    /// Only the checks with these names (repeat, or separate with commas).
    #[arg(long, value_delimiter = ',')]
    check: Vec<String>,
    /// Leaves out the checks with these names (repeat, or separate with
    /// commas); for example checks whose guest crash would take a nested
    /// lab's L1 down with it.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Time limit of each check, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// How many checks run at once (the leak checks always run alone, last).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// A JSON `UvmConfig` to use as the template of every VM (no boot devices;
    /// the checks add what they need). The default is 1 vCPU and 256 MiB.
    /// For `kvm`, a template without a kernel gets the test guest's kernel,
    /// initrd and command line from `UVM_GUEST_ASSETS` (`cargo xtask lab` sets it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ends the run (exit 3, printing where every thread is) if the async
    /// runtime makes no progress for this many seconds; 0 never does.
    #[arg(long, default_value_t = 120)]
    stall_timeout: u64,
    /// Switches these capabilities off in the `mock` backend (repeat, or
    /// separate with commas): a resource (all its operations),
    /// RESOURCE:OPERATION, pause, resume, save or restore. Shows how a backend
    /// lacking them is reported: their checks end unclaimed.
    #[arg(long, value_delimiter = ',')]
    mock_without: Vec<String>,
    /// Lists the checks (name, area, description) and exits.
    #[arg(long)]
    list: bool,
    /// Logs what the suite does to stderr (`RUST_LOG` also works).
    #[arg(long, short)]
    verbose: bool,
}

fn parse_area(s: &str) -> Result<Area, String> {
    s.parse()
        .map_err(|e: uvm_conformance::UnknownArea| e.to_string())
}

/// The config template: the given file, or the default.
fn template(path: Option<&PathBuf>) -> Result<UvmConfig, String> {
    let config = match path {
        None => UvmConfig::builder("conformance")
            .build()
            .map_err(|e| e.to_string())?,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let config: UvmConfig = serde_json::from_str(&text)
                .map_err(|e| format!("parsing {}: {e}", path.display()))?;
            config
                .validate()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            config
        }
    };
    Ok(config)
}

fn init_logging(verbose: bool) {
    let default = if verbose { "info" } else { "error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn list() -> ExitCode {
    for check in all_checks() {
        println!(
            "{:<13} {:<58} {}",
            check.area.as_str(),
            check.name,
            check.description
        );
    }
    ExitCode::SUCCESS
}

fn print(report: &Report, format: Format) -> Result<(), String> {
    match format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => println!("{}", report.to_json().map_err(|e| e.to_string())?),
        Format::Junit => print!("{}", report.to_junit().map_err(|e| e.to_string())?),
    }
    Ok(())
}

fn run(cli: Cli) -> Result<bool, String> {
    let Some(name) = cli.backend.as_deref() else {
        return Err("--backend is required".into());
    };
    if !cli.mock_without.is_empty() && name != uvm_backend_mock::BACKEND_NAME {
        return Err(format!(
            "--mock-without applies to the {} backend only",
            uvm_backend_mock::BACKEND_NAME
        ));
    }
    let mock = mock_profile::without(&cli.mock_without)?;
    let registry = backends::registry(mock).map_err(|e| format!("registering backends: {e}"))?;
    let backend = registry.get(name).map_err(|e| e.to_string())?;
    backend
        .check_available()
        .map_err(|e| format!("backend {name} is not available on this host: {e}"))?;
    let template = backends::with_boot_files(name, template(cli.config.as_ref())?)?;
    let known: Vec<&str> = all_checks().iter().map(|c| c.name).collect();
    if let Some(unknown) = cli
        .check
        .iter()
        .chain(&cli.skip)
        .find(|c| !known.contains(&c.as_str()))
    {
        return Err(format!("no check named {unknown:?} (see --list)"));
    }
    let names: Vec<String> = if cli.skip.is_empty() {
        cli.check
    } else {
        known
            .iter()
            .filter(|n| cli.check.is_empty() || cli.check.iter().any(|c| c == *n))
            .filter(|n| !cli.skip.iter().any(|s| s == *n))
            .map(|n| (*n).to_owned())
            .collect()
    };
    let options = RunOptions {
        timeout: Duration::from_secs(cli.timeout),
        areas: cli.only,
        names,
        parallelism: cli.jobs.max(1),
        ..RunOptions::default()
    };
    // Spare workers: a check whose backend call blocks a thread past its
    // limit is failed and left behind, and the run goes on with the others.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(options.parallelism)
        .max(MIN_WORKERS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("building the tokio runtime: {e}"))?;
    let watchdog = match cli.stall_timeout {
        0 => None,
        secs => Some(
            watchdog::Watchdog::start(&runtime, Duration::from_secs(secs))
                .map_err(|e| format!("starting the watchdog thread: {e}"))?,
        ),
    };
    let factory = Factory::shared(backend);
    let report = runtime.block_on(run_suite(&factory, &template, &options));
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    print(&report, cli.format)?;
    // Threads blocked in a failed check never end: do not wait for them.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    Ok(report.success())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if cli.list {
        return list();
    }
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("uvm-conformance: {message}");
            ExitCode::from(2)
        }
    }
}
