//! The I/O benchmark ops: `disk_bench` (on `<root>/dev/<device>`, so tests
//! run it on a plain file), `vsock_sink`, `vsock_send` and `net_send`
//! (through [`System`]). Each checks its bounds here; the loops are in
//! [`crate::iobench`].

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use super::vsock::HOST_CID;
use super::{HandlerError, HandlerResult, check_name};
use crate::protocol::{
    DiskBenchPlan, DiskPattern, Empty, IoBenchReply, MAX_BENCH_THREADS, MAX_BLOCK_SIZE,
    MAX_FRAME_LEN, MAX_IO_BENCH_MS, MAX_STREAM_BYTES, MIN_FRAME_LEN,
};
use crate::system::System;

/// `VMADDR_PORT_ANY`, which cannot be dialled or bound by number.
const PORT_ANY: u32 = u32::MAX;

fn invalid(message: String) -> HandlerError {
    HandlerError::InvalidArgument(message)
}

fn check_ms(what: &str, ms: u64) -> HandlerResult<Duration> {
    if ms == 0 || ms > MAX_IO_BENCH_MS {
        return Err(invalid(format!(
            "{what} {ms} is not in 1..={MAX_IO_BENCH_MS}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

fn check_bytes(bytes: u64) -> HandlerResult<()> {
    if bytes == 0 || bytes > MAX_STREAM_BYTES {
        return Err(invalid(format!(
            "bytes {bytes} is not in 1..={MAX_STREAM_BYTES}"
        )));
    }
    Ok(())
}

fn check_port(port: u32) -> HandlerResult<()> {
    if port == PORT_ANY {
        return Err(invalid(format!(
            "port {port} is VMADDR_PORT_ANY, not a real port"
        )));
    }
    Ok(())
}

/// Maps a loop's failure: running out of time is a `timeout` error.
fn failed(context: String, error: io::Error) -> HandlerError {
    if error.kind() == io::ErrorKind::TimedOut {
        HandlerError::Timeout(format!("{context}: {error}"))
    } else {
        HandlerError::io(context, error)
    }
}

/// Checks the parts of `plan` that do not depend on the device.
pub fn check_plan(plan: &DiskBenchPlan) -> HandlerResult<()> {
    check_name("device", &plan.device)?;
    let block = plan.block_size;
    if block == 0 || !block.is_multiple_of(512) || block > MAX_BLOCK_SIZE {
        return Err(invalid(format!(
            "block_size {block} is not a multiple of 512 in 512..={MAX_BLOCK_SIZE}"
        )));
    }
    if plan.span == 0 || !plan.span.is_multiple_of(u64::from(block)) || plan.span > MAX_STREAM_BYTES
    {
        return Err(invalid(format!(
            "span {} is not a multiple of block_size {block} in 1..={MAX_STREAM_BYTES}",
            plan.span
        )));
    }
    if plan.threads == 0 || plan.threads > MAX_BENCH_THREADS {
        return Err(invalid(format!(
            "threads {} is not in 1..={MAX_BENCH_THREADS}",
            plan.threads
        )));
    }
    check_ms("duration_ms", plan.duration_ms)?;
    Ok(())
}

/// `disk_bench`: runs `plan` on `<root>/dev/<device>`.
pub fn disk_bench(root: &Path, plan: &DiskBenchPlan) -> HandlerResult<IoBenchReply> {
    check_plan(plan)?;
    let path = root.join("dev").join(&plan.device);
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(plan.pattern == DiskPattern::SeqWrite);
    if plan.direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options
        .open(&path)
        .map_err(|e| HandlerError::io(format!("open {}", path.display()), e))?;
    let size = crate::flood::device_size(&file)
        .map_err(|e| HandlerError::io(format!("size of {}", path.display()), e))?;
    if plan.span > size {
        return Err(invalid(format!(
            "span {} is beyond the {size} bytes of {}",
            plan.span,
            path.display()
        )));
    }
    crate::iobench::disk_run(&file, plan).map_err(|e| failed(format!("{path:?}"), e))
}

/// `vsock_sink`: binds guest `port` for one stream sink connection.
pub fn vsock_sink(system: &dyn System, port: u32, timeout_ms: u64) -> HandlerResult<Empty> {
    check_port(port)?;
    let timeout = check_ms("timeout_ms", timeout_ms)?;
    system
        .vsock_sink(port, timeout, MAX_STREAM_BYTES)
        .map_err(|e| HandlerError::io(format!("vsock sink on port {port}"), e))?;
    Ok(Empty {})
}

/// `vsock_send`: streams `bytes` bytes to host `port`.
pub fn vsock_send(
    system: &dyn System,
    port: u32,
    bytes: u64,
    timeout_ms: u64,
) -> HandlerResult<IoBenchReply> {
    check_port(port)?;
    check_bytes(bytes)?;
    let timeout = check_ms("timeout_ms", timeout_ms)?;
    system
        .vsock_send(HOST_CID, port, bytes, timeout)
        .map_err(|e| failed(format!("vsock stream to host port {port}"), e))
}

/// `net_send`: sends `bytes` bytes of raw frames out of `interface`.
pub fn net_send(
    system: &dyn System,
    interface: &str,
    bytes: u64,
    frame_len: u32,
    timeout_ms: u64,
) -> HandlerResult<IoBenchReply> {
    check_name("interface", interface)?;
    check_bytes(bytes)?;
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame_len) {
        return Err(invalid(format!(
            "frame_len {frame_len} is not in {MIN_FRAME_LEN}..={MAX_FRAME_LEN}"
        )));
    }
    let timeout = check_ms("timeout_ms", timeout_ms)?;
    system
        .net_send(interface, bytes, frame_len as usize, timeout)
        .map_err(|e| failed(format!("frames out of {interface}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use crate::system::fake::FakeSystem;

    fn plan(pattern: DiskPattern) -> DiskBenchPlan {
        DiskBenchPlan {
            device: "sdb".into(),
            pattern,
            block_size: 4096,
            span: 1 << 20,
            threads: 2,
            duration_ms: 10_000,
            direct: false,
        }
    }

    fn kind<T: std::fmt::Debug>(result: HandlerResult<T>) -> ErrorKind {
        result.unwrap_err().to_body().kind
    }

    #[test]
    fn disk_bench_runs_on_a_file_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("dev")).unwrap();
        let disk = root.path().join("dev/sdb");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(2 << 20)
            .unwrap();
        let written = disk_bench(root.path(), &plan(DiskPattern::SeqWrite)).unwrap();
        assert_eq!((written.bytes, written.ops), (1 << 20, 256));
        let read = disk_bench(root.path(), &plan(DiskPattern::SeqRead)).unwrap();
        assert_eq!(read.bytes, 1 << 20);
        let random = disk_bench(
            root.path(),
            &DiskBenchPlan {
                duration_ms: 20,
                ..plan(DiskPattern::RandRead)
            },
        )
        .unwrap();
        assert!(random.ops > 0);

        let too_far = DiskBenchPlan {
            span: 4 << 20,
            ..plan(DiskPattern::SeqRead)
        };
        assert_eq!(
            kind(disk_bench(root.path(), &too_far)),
            ErrorKind::InvalidArgument
        );
        let missing = DiskBenchPlan {
            device: "sdz".into(),
            ..plan(DiskPattern::SeqRead)
        };
        assert_eq!(kind(disk_bench(root.path(), &missing)), ErrorKind::NotFound);
    }

    #[test]
    fn disk_plans_out_of_bounds_are_refused() {
        let base = plan(DiskPattern::RandRead);
        for bad in [
            DiskBenchPlan {
                device: "../sda".into(),
                ..base.clone()
            },
            DiskBenchPlan {
                block_size: 1000,
                ..base.clone()
            },
            DiskBenchPlan {
                block_size: MAX_BLOCK_SIZE * 2,
                span: u64::from(MAX_BLOCK_SIZE) * 2,
                ..base.clone()
            },
            DiskBenchPlan {
                span: 4097,
                ..base.clone()
            },
            DiskBenchPlan {
                threads: 0,
                ..base.clone()
            },
            DiskBenchPlan {
                threads: MAX_BENCH_THREADS + 1,
                ..base.clone()
            },
            DiskBenchPlan {
                duration_ms: MAX_IO_BENCH_MS + 1,
                ..base.clone()
            },
        ] {
            assert!(
                matches!(check_plan(&bad), Err(HandlerError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        assert!(check_plan(&base).is_ok());
    }

    #[test]
    fn stream_and_frame_ops_are_checked_then_run() {
        let system = FakeSystem::default();
        vsock_sink(&system, 7000, 1000).unwrap();
        let taken = vsock_sink(&system, 7000, 1000).unwrap_err().to_body();
        assert_eq!(taken.errno, Some(libc::EADDRINUSE));
        assert_eq!(
            kind(vsock_sink(&system, u32::MAX, 1000)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(vsock_sink(&system, 7001, 0)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(system.sinks(), vec![7000]);

        let sent = vsock_send(&system, 7002, 1 << 20, 1000).unwrap();
        assert_eq!(sent.bytes, 1 << 20);
        assert_eq!(
            kind(vsock_send(&system, 7002, 0, 1000)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(vsock_send(&system, 7002, MAX_STREAM_BYTES + 1, 1000)),
            ErrorKind::InvalidArgument
        );

        let frames = net_send(&system, "eth0", 3028, 1514, 1000).unwrap();
        assert_eq!(frames.ops, 2);
        assert_eq!(
            kind(net_send(&system, "eth0", 100, 59, 1000)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(net_send(&system, "eth0", 100, 1515, 1000)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(net_send(&system, "a/b", 100, 1514, 1000)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(net_send(&system, "eth0", 100, 1514, MAX_IO_BENCH_MS + 1)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            system.sends(),
            vec![
                "vsock 2:7002 1048576".to_owned(),
                "net eth0 3028 1514".to_owned()
            ]
        );
    }

    #[test]
    fn running_out_of_time_is_a_timeout() {
        let error = failed("x".into(), io::Error::new(io::ErrorKind::TimedOut, "late"));
        assert_eq!(error.to_body().kind, ErrorKind::Timeout);
    }
}
