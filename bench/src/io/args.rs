//! `io-bench`'s command line, parsed from any list of arguments.

use std::path::PathBuf;
use std::time::Duration;

use super::report::Group;
use crate::error::{BenchError, Result};

/// The usage line.
pub const USAGE: &str = "io-bench [--runs N] [--only kvm|qemu] [--figures disk,vsock,net] \
     [--size-mib M] [--rand-secs S] [--queue-depth Q] [--vsock-mib M] [--net-mib M] \
     [--memory-mib M] [--timeout-secs S] [--kvm-baseline PATH] [--print-samples]";

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
    /// Another io-bench build whose backend-kvm figures are measured in
    /// each run too (`--kvm-baseline`), to compare builds in one L1.
    pub baseline: Option<PathBuf>,
    /// Print each sample as a line for a parent io-bench
    /// (`--print-samples`; what a baseline child is run with).
    pub print_samples: bool,
}

impl Args {
    /// The arguments that give a child io-bench the same plan, backend-kvm
    /// only and one run, printing its samples.
    pub fn child_arguments(&self) -> Vec<String> {
        let figures: Vec<&str> = self.groups.iter().map(|g| g.name()).collect();
        let mut list = vec![
            "--only".to_owned(),
            "kvm".to_owned(),
            "--runs".to_owned(),
            "1".to_owned(),
            "--print-samples".to_owned(),
            "--figures".to_owned(),
            figures.join(","),
        ];
        for (flag, value) in [
            ("--size-mib", self.size_mib),
            ("--rand-secs", self.rand.as_secs()),
            ("--queue-depth", u64::from(self.queue_depth)),
            ("--vsock-mib", self.vsock_mib),
            ("--net-mib", self.net_mib),
            ("--memory-mib", u64::from(self.memory_mib)),
            ("--timeout-secs", self.boot_timeout.as_secs()),
        ] {
            list.push(flag.to_owned());
            list.push(value.to_string());
        }
        list
    }
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
            baseline: None,
            print_samples: false,
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
            "--kvm-baseline" => {
                let path = it.next().ok_or_else(|| {
                    BenchError::Usage("--kvm-baseline needs the path of an io-bench".into())
                })?;
                args.baseline = Some(PathBuf::from(path));
            }
            "--print-samples" => args.print_samples = true,
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
        let args = parse_str("--kvm-baseline /uvm/bin/io-bench-before --print-samples").unwrap();
        assert_eq!(
            args.baseline.as_deref(),
            Some(std::path::Path::new("/uvm/bin/io-bench-before"))
        );
        assert!(args.print_samples);
    }

    #[test]
    fn a_child_gets_the_same_plan_for_backend_kvm_alone() {
        let parent = parse_str(
            "--runs 5 --figures vsock,net --size-mib 16 --rand-secs 2 --queue-depth 4 \
             --vsock-mib 8 --net-mib 2 --memory-mib 384 --timeout-secs 60 --kvm-baseline /b",
        )
        .unwrap();
        let child = parse(parent.child_arguments()).unwrap();
        assert_eq!(child.runs, 1);
        assert!(child.kvm && !child.qemu && child.print_samples);
        assert_eq!(child.baseline, None, "a child runs no baseline of its own");
        assert_eq!(child.groups, parent.groups);
        assert_eq!(
            (
                child.size_mib,
                child.rand,
                child.queue_depth,
                child.vsock_mib
            ),
            (
                parent.size_mib,
                parent.rand,
                parent.queue_depth,
                parent.vsock_mib
            )
        );
        assert_eq!(
            (child.net_mib, child.memory_mib, child.boot_timeout),
            (parent.net_mib, parent.memory_mib, parent.boot_timeout)
        );
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
            "--kvm-baseline",
            "--bogus",
        ] {
            assert!(matches!(parse_str(bad), Err(BenchError::Usage(_))), "{bad}");
        }
    }
}
