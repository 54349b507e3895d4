//! `kvm-selftest`: checks that `/dev/kvm` runs guest code and times its exits.
//!
//! Usage: `kvm-selftest [--device PATH] [--exits N]`. Exits 0 when the guest
//! ran to its `hlt` with the expected port writes, 1 otherwise, 2 on bad
//! arguments.

use std::process::ExitCode;

use uvm_tools::selftest::{SelftestOptions, run_selftest};

const USAGE: &str = "usage: kvm-selftest [--device PATH] [--exits N (1..=65535)]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<SelftestOptions, String> {
    let mut options = SelftestOptions::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => {
                options.device = args.next().ok_or("--device needs a path")?.into();
            }
            "--exits" => {
                let value = args.next().ok_or("--exits needs a number")?;
                options.exits = value.parse().map_err(|e| format!("--exits {value}: {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("kvm-selftest: {message}");
            return ExitCode::from(2);
        }
    };
    match run_selftest(&options) {
        Ok(report) => {
            println!("{report}");
            println!("kvm-selftest: OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kvm-selftest: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_device_and_exits() {
        let o = parse_args(args("--device /dev/other --exits 5")).unwrap();
        assert_eq!(o.device, std::path::PathBuf::from("/dev/other"));
        assert_eq!(o.exits, 5);
        assert_eq!(parse_args(args("")).unwrap(), SelftestOptions::default());
        assert!(parse_args(args("--exits 70000")).is_err());
        assert!(parse_args(args("--exits")).is_err());
        assert!(parse_args(args("--bogus")).is_err());
    }
}
