//! `/proc`: uptime and memory.

use std::path::Path;

use super::{HandlerError, HandlerResult, read_trimmed};
use crate::protocol::{MeminfoReply, UptimeReply};

fn bad(path: &str, what: &str) -> HandlerError {
    HandlerError::InvalidArgument(format!("{path}: cannot parse {what}"))
}

/// `uptime`: the two numbers of `/proc/uptime`.
pub fn uptime(root: &Path) -> HandlerResult<UptimeReply> {
    let text = read_trimmed(&root.join("proc/uptime"))?;
    let mut numbers = text.split_whitespace().map(str::parse::<f64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(uptime_secs)), Some(Ok(idle_secs))) => Ok(UptimeReply {
            uptime_secs,
            idle_secs,
        }),
        _ => Err(bad("/proc/uptime", "two numbers")),
    }
}

/// Parses `/proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> Option<MeminfoReply> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(MeminfoReply {
        total_kib: field("MemTotal")?,
        free_kib: field("MemFree")?,
        available_kib: field("MemAvailable"),
    })
}

/// `meminfo`: total, free and available memory from `/proc/meminfo`.
pub fn meminfo(root: &Path) -> HandlerResult<MeminfoReply> {
    let text = read_trimmed(&root.join("proc/meminfo"))?;
    parse_meminfo(&text).ok_or_else(|| bad("/proc/meminfo", "MemTotal and MemFree"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_uptime_and_meminfo() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proc")).unwrap();
        fs::write(root.path().join("proc/uptime"), "12.34 40.50\n").unwrap();
        fs::write(
            root.path().join("proc/meminfo"),
            "MemTotal:         250000 kB\nMemFree:          200000 kB\nMemAvailable:     210000 kB\nBuffers: 1 kB\n",
        )
        .unwrap();
        let up = uptime(root.path()).unwrap();
        assert_eq!((up.uptime_secs, up.idle_secs), (12.34, 40.5));
        assert_eq!(
            meminfo(root.path()).unwrap(),
            MeminfoReply {
                total_kib: 250_000,
                free_kib: 200_000,
                available_kib: Some(210_000)
            }
        );
    }

    #[test]
    fn malformed_proc_files_are_errors() {
        let root = tempfile::tempdir().unwrap();
        assert!(uptime(root.path()).is_err());
        fs::create_dir_all(root.path().join("proc")).unwrap();
        fs::write(root.path().join("proc/uptime"), "x\n").unwrap();
        assert!(uptime(root.path()).is_err());
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(
            parse_meminfo("MemTotal: 1 kB\nMemFree: 2 kB\n"),
            Some(MeminfoReply {
                total_kib: 1,
                free_kib: 2,
                available_kib: None
            })
        );
    }
}
