//! `io-bench`'s command line, parsed from any list of arguments.

use std::time::Duration;

use super::report::Group;
use crate::error::{BenchError, Result};

/// The usage line.
pub const USAGE: &str = "io-bench [--runs N] [--only kvm|qemu] [--figures disk,vsock,net] \
     [--size-mib M] [--rand-secs S] [--queue-depth Q] [--vsock-mib M] [--net-mib M] \
     [--memory-mib M] [--timeout-secs S]";

/// The most runs accepted.
pub const MAX_RUNS: usize = 50;

/// What to measure and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Runs per VMM (each a fresh guest).
    pub runs: usize,
    /// Measure backend-kvm.
    pub kvm: bool,
    /// Measure QEMU (when it is found).
    pub qemu: bool,
    /// The figure groups, in [`Group::ALL`] order.
    pub groups: Vec<Group>,
    /// Bytes of the disk the sequential passes cover (MiB).
    pub size_mib: u64,
    /// How long the random reads run.
    pub rand: Duration,
    /// Threads of the random reads (the queue depth).
    pub queue_depth: u32,
    /// Bytes of each vsock stream (MiB).
    pub vsock_mib: u64,
    /// Bytes of raw frames the guest sends (MiB).
    pub net_mib: u64,
    /// Guest memory (MiB).
    pub memory_mib: u32,
    /// How long a boot may take.
    pub boot_timeout: Duration,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            runs: 5,
            kvm: true,
            qemu: true,
            groups: Group::ALL.to_vec(),
            size_mib: 256,
            rand: Duration::from_secs(5),
            queue_depth: 16,
            vsock_mib: 256,
            net_mib: 64,
            memory_mib: 512,
            boot_timeout: Duration::from_secs(300),
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Usage(format!("{flag} needs a number; {USAGE}")))
}

fn positive(flag: &str, v: u64, max: u64) -> Result<u64> {
    if v == 0 || v > max {
        return Err(BenchError::Usage(format!("{flag} must be in 1..={max}")));
    }
    Ok(v)
}

/// Parses the arguments after the program name.
pub fn parse(arguments: impl IntoIterator<Item = String>) -> Result<Args> {
    let mut args = Args::default();
    let mut it = arguments.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = number(&arg, it.next())?,
            "--only" => match it.next().as_deref() {
                Some("kvm") => (args.kvm, args.qemu) = (true, false),
                Some("qemu") => (args.kvm, args.qemu) = (false, true),
                _ => return Err(BenchError::Usage("--only kvm|qemu".into())),
            },
            "--figures" => {
                let list = it
                    .next()
                    .ok_or_else(|| BenchError::Usage("--figures needs disk,vsock,net".into()))?;
                args.groups = Group::parse_list(&list)?;
            }
            "--size-mib" => args.size_mib = positive(&arg, number(&arg, it.next())?, 4096)?,
            "--rand-secs" => {
                args.rand = Duration::from_secs(positive(&arg, number(&arg, it.next())?, 120)?);
            }
            "--queue-depth" => {
                let q = positive(&arg, number(&arg, it.next())?, 64)?;
                args.queue_depth = u32::try_from(q).unwrap_or(64);
            }
            "--vsock-mib" => args.vsock_mib = positive(&arg, number(&arg, it.next())?, 4096)?,
            "--net-mib" => args.net_mib = positive(&arg, number(&arg, it.next())?, 4096)?,
            "--memory-mib" => args.memory_mib = number(&arg, it.next())?,
            "--timeout-secs" => {
                args.boot_timeout = Duration::from_secs(number(&arg, it.next())?);
            }
            other => {
                return Err(BenchError::Usage(format!(
                    "unknown argument {other:?}; {USAGE}"
                )));
            }
        }
    }
    if !(1..=MAX_RUNS).contains(&args.runs) {
        return Err(BenchError::Usage(format!(
            "--runs must be in 1..={MAX_RUNS}"
        )));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Args> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn defaults_and_flags() {
        let args = parse_str("").unwrap();
        assert_eq!(args, Args::default());
        assert_eq!((args.size_mib, args.queue_depth, args.runs), (256, 16, 5));
        let args = parse_str(
            "--runs 3 --only qemu --figures net,disk --size-mib 16 --rand-secs 2 --queue-depth 4 \
             --vsock-mib 8 --net-mib 2 --memory-mib 384 --timeout-secs 60",
        )
        .unwrap();
        assert_eq!(args.runs, 3);
        assert!(!args.kvm && args.qemu);
        assert_eq!(args.groups, vec![Group::Disk, Group::Net]);
        assert_eq!(
            (args.size_mib, args.rand, args.queue_depth),
            (16, Duration::from_secs(2), 4)
        );
        assert_eq!((args.vsock_mib, args.net_mib, args.memory_mib), (8, 2, 384));
        assert_eq!(args.boot_timeout, Duration::from_secs(60));
        let args = parse_str("--only kvm").unwrap();
        assert!(args.kvm && !args.qemu);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for bad in [
            "--runs 0",
            "--runs 51",
            "--runs x",
            "--only both",
            "--figures",
            "--figures cpu",
            "--size-mib 0",
            "--queue-depth 65",
            "--rand-secs 0",
            "--bogus",
        ] {
            assert!(matches!(parse_str(bad), Err(BenchError::Usage(_))), "{bad}");
        }
    }
}
