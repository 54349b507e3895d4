//! `kvm-probe`: checks that `/dev/kvm` runs guest code and prints timings.
//!
//! Usage: `kvm-probe [--device PATH] [--exits N]`. Exits 0 when the guest
//! ran to its `hlt` with the expected port writes, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use uvm_backend_kvm::probe::{DEFAULT_DEVICE, DEFAULT_EXITS, ProbeOptions, run_probe};

fn parse_args() -> Result<ProbeOptions, String> {
    let mut options = ProbeOptions {
        device: PathBuf::from(DEFAULT_DEVICE),
        exits: DEFAULT_EXITS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => {
                options.device = args.next().ok_or("--device needs a path")?.into();
            }
            "--exits" => {
                let value = args.next().ok_or("--exits needs a number")?;
                options.exits = value.parse().map_err(|e| format!("--exits {value}: {e}"))?;
            }
            "-h" | "--help" => {
                return Err("usage: kvm-probe [--device PATH] [--exits N (1..=65535)]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("kvm-probe: {message}");
            return ExitCode::from(2);
        }
    };
    match run_probe(&options) {
        Ok(report) => {
            println!("{report}");
            println!("kvm-probe: OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kvm-probe: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
