//! The measurements of one run on one booted [`IoGuest`]: each figure of
//! the plan's groups, with backend-kvm's exits per second around it. A
//! figure that fails is reported and the next one runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_guest_agent::protocol::{DiskBenchPlan, DiskPattern, Empty, IoBenchReply, Op};

use super::guest::{EXITS_TOTAL, IoGuest, NicEnds, drain_stream, write_stream};
use super::report::{Figure, Group, Sample, mb_per_sec};
use super::tap;
use super::watchdog::Watchdog;
use crate::error::{BenchError, Result};

/// The guest port of the host-to-guest stream.
pub const SINK_PORT: u32 = 7301;
/// The host port of the guest-to-host stream.
pub const SEND_PORT: u32 = 7302;
/// The sequential requests' size.
pub const SEQ_BLOCK: u32 = 1 << 20;
/// The random reads' size.
pub const RAND_BLOCK: u32 = 4096;
/// The longest a sequential pass, a stream or the frames may take.
pub const PASS_LIMIT: Duration = Duration::from_secs(240);
/// The longest one step (attaching a device, one figure) may take before
/// the watchdog ends the benchmark.
pub const STEP_LIMIT: Duration = Duration::from_secs(300);
/// How long the tap's counter may stand still while the guest is still
/// sending before the NIC counts as stalled.
pub const NET_STALL: Duration = Duration::from_secs(20);
/// How long the tap's counter must stand still after the guest is done
/// before the frames count as all delivered.
const NET_SETTLE: Duration = Duration::from_millis(300);

/// What one run measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The figure groups.
    pub groups: Vec<Group>,
    /// Bytes of the disk the passes cover (the image is 1 MiB larger).
    pub disk_bytes: u64,
    /// How long the random reads run.
    pub rand: Duration,
    /// Threads of the random reads.
    pub queue_depth: u32,
    /// Bytes of each vsock stream.
    pub vsock_bytes: u64,
    /// Bytes of frames the guest sends.
    pub net_bytes: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The figures of one run, and what failed.
#[derive(Debug, Default)]
pub struct RunResult {
    /// The samples.
    pub samples: Vec<Sample>,
    /// One line per failure.
    pub errors: Vec<String>,
}

/// Creates a raw image of `bytes` bytes in `dir`, named for `vmm`.
pub fn disk_image(dir: &Path, vmm: &str, run: usize, bytes: u64) -> Result<std::path::PathBuf> {
    let path = dir.join(format!("{vmm}-{run}-disk.raw"));
    let file = std::fs::File::create(&path)
        .map_err(BenchError::io(format!("create {}", path.display())))?;
    file.set_len(bytes)
        .map_err(BenchError::io(format!("resize {}", path.display())))?;
    Ok(path)
}

/// Measures every figure of `plan` on `guest` (run number `run`, its disk
/// image in `dir`).
/// `watchdog` gets one phase per step, each limited to [`STEP_LIMIT`].
pub async fn run(
    guest: &mut IoGuest,
    plan: &Plan,
    run: usize,
    dir: &Path,
    watchdog: &Watchdog,
) -> RunResult {
    let mut result = RunResult::default();
    let vmm = guest.vmm;
    let step = |what: &str| watchdog.phase(format!("{vmm} run {run}: {what}"), STEP_LIMIT);
    for group in &plan.groups {
        match group {
            Group::Disk => disk(guest, plan, run, dir, &mut result, watchdog).await,
            Group::Vsock => {
                step("vsock host -> guest");
                let to_guest = timed(guest, vsock_to_guest(guest, plan.vsock_bytes)).await;
                record(&mut result, guest, run, Figure::VsockToGuest, to_guest);
                step("vsock guest -> host");
                let to_host = timed(guest, vsock_to_host(guest, plan.vsock_bytes)).await;
                record(&mut result, guest, run, Figure::VsockToHost, to_host);
            }
            Group::Net => {
                step("NIC");
                match guest.attach_nic(run).await {
                    Ok(nic) => {
                        let sent = timed(guest, net_to_host(guest, &nic, plan.net_bytes)).await;
                        record(&mut result, guest, run, Figure::NetToHost, sent);
                    }
                    Err(e) => fail(&mut result, guest, run, "attach the NIC", &e),
                }
            }
        }
    }
    watchdog.idle();
    result
}

fn fail(result: &mut RunResult, guest: &IoGuest, run: usize, what: &str, e: &BenchError) {
    let line = format!("{} run {run}: {what}: {e}", guest.vmm);
    eprintln!("io-bench: {line}");
    result.errors.push(line);
}

fn record(
    result: &mut RunResult,
    guest: &IoGuest,
    run: usize,
    figure: Figure,
    measured: Result<(f64, Option<f64>)>,
) {
    match measured {
        Ok((value, exits_per_sec)) => {
            eprintln!(
                "io-bench: {} run {run}: {figure} {value:.1}{}",
                guest.vmm,
                exits_per_sec
                    .map(|e| format!(", {e:.0} exits/s"))
                    .unwrap_or_default()
            );
            result.samples.push(Sample {
                vmm: guest.vmm,
                run,
                figure,
                value,
                exits_per_sec,
            });
        }
        Err(e) => fail(result, guest, run, &figure.to_string(), &e),
    }
}

/// The exits per second of each counter that grew between `before` and
/// `after` (`seconds` apart), `exits.total` first, then by rate.
pub fn exit_rates(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    seconds: f64,
) -> Vec<(String, f64)> {
    if seconds <= 0.0 {
        return Vec::new();
    }
    let mut rates: Vec<(String, f64)> = after
        .iter()
        .map(|(k, &a)| {
            let b = before.get(k).copied().unwrap_or(0);
            (k.clone(), a.saturating_sub(b) as f64 / seconds)
        })
        .filter(|(k, r)| *r > 0.0 || k == EXITS_TOTAL)
        .collect();
    rates.sort_by(|a, b| {
        (b.0 == EXITS_TOTAL)
            .cmp(&(a.0 == EXITS_TOTAL))
            .then(b.1.total_cmp(&a.1))
    });
    rates
}

/// Runs `work` between two reads of the exit counters; returns its value
/// and the exits per second over the wall time between the reads (the
/// counters that grew are logged, and so is the CPU share of each busy
/// VMM thread).
async fn timed(
    guest: &IoGuest,
    work: impl std::future::Future<Output = Result<f64>>,
) -> Result<(f64, Option<f64>)> {
    let before = guest.exits().await;
    let threads_before = guest.vmm_threads();
    let started = Instant::now();
    let value = work.await?;
    let elapsed = started.elapsed();
    let seconds = elapsed.as_secs_f64();
    let after = guest.exits().await;
    let busiest = uvm_tools::threads::busiest(&threads_before, &guest.vmm_threads(), elapsed);
    eprintln!(
        "io-bench: {}: VMM threads' CPU over {seconds:.2} s: {}",
        guest.vmm,
        busiest
            .iter()
            .map(|(name, percent)| format!("{name} {percent:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (Some(before), Some(after)) = (before, after) else {
        return Ok((value, None));
    };
    let rates = exit_rates(&before, &after, seconds);
    eprintln!(
        "io-bench: {}: exits/s over {seconds:.2} s: {}",
        guest.vmm,
        rates
            .iter()
            .map(|(k, r)| format!("{k} {r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let total = rates
        .iter()
        .find(|(k, _)| k == EXITS_TOTAL)
        .map(|(_, r)| *r);
    Ok((value, total))
}

async fn disk(
    guest: &mut IoGuest,
    plan: &Plan,
    run: usize,
    dir: &Path,
    result: &mut RunResult,
    watchdog: &Watchdog,
) {
    let vmm = guest.vmm;
    let step = |what: &str| watchdog.phase(format!("{vmm} run {run}: {what}"), STEP_LIMIT);
    step("disk attach");
    let image = match disk_image(dir, guest.vmm, run, plan.disk_bytes + (1 << 20)) {
        Ok(image) => image,
        Err(e) => return fail(result, guest, run, "create the disk image", &e),
    };
    let name = match guest.attach_disk(&image).await {
        Ok(name) => name,
        Err(e) => return fail(result, guest, run, "attach the disk", &e),
    };
    let seq = |pattern| DiskBenchPlan {
        device: name.clone(),
        pattern,
        block_size: SEQ_BLOCK,
        span: plan.disk_bytes,
        threads: 1,
        duration_ms: ms(PASS_LIMIT),
        direct: true,
    };
    // Written first, so the reads read data, not holes of a sparse image.
    step("disk seq write");
    let write = timed(guest, disk_rate(guest, seq(DiskPattern::SeqWrite), false)).await;
    record(result, guest, run, Figure::SeqWrite, write);
    step("disk seq read");
    let read = timed(guest, disk_rate(guest, seq(DiskPattern::SeqRead), false)).await;
    record(result, guest, run, Figure::SeqRead, read);
    let random = DiskBenchPlan {
        device: name.clone(),
        pattern: DiskPattern::RandRead,
        block_size: RAND_BLOCK,
        span: plan.disk_bytes,
        threads: plan.queue_depth,
        duration_ms: ms(plan.rand),
        direct: true,
    };
    step("disk random reads");
    let iops = timed(guest, disk_rate(guest, random, true)).await;
    record(result, guest, run, Figure::RandRead, iops);
    let _ = std::fs::remove_file(&image);
}

/// Runs a `disk_bench`; returns MB/s, or operations per second if `iops`.
async fn disk_rate(guest: &IoGuest, plan: DiskBenchPlan, iops: bool) -> Result<f64> {
    let reply: IoBenchReply = guest
        .agent
        .call(Op::DiskBench(plan))
        .await
        .map_err(BenchError::uvm("disk_bench"))?;
    let seconds = reply.elapsed_us as f64 / 1e6;
    if seconds <= 0.0 {
        return Err(BenchError::Vm(format!(
            "the guest timed nothing: {reply:?}"
        )));
    }
    Ok(if iops {
        reply.ops as f64 / seconds
    } else {
        mb_per_sec(reply.bytes, seconds)
    })
}

/// One stream host to guest, timed on the host from the first byte to the
/// guest's acknowledgement of the count; MB/s.
async fn vsock_to_guest(guest: &IoGuest, bytes: u64) -> Result<f64> {
    let _: Empty = guest
        .agent
        .call(Op::VsockSink {
            port: SINK_PORT,
            timeout_ms: ms(PASS_LIMIT),
        })
        .await
        .map_err(BenchError::uvm("vsock_sink"))?;
    let mut stream = guest.vsock.connect(SINK_PORT).await?;
    let started = Instant::now();
    let transfer = async {
        write_stream(&mut stream, bytes).await?;
        let mut ack = [0u8; 8];
        stream.read_exact(&mut ack).await?;
        Ok::<u64, std::io::Error>(u64::from_le_bytes(ack))
    };
    let counted = tokio::time::timeout(PASS_LIMIT, transfer)
        .await
        .map_err(|_| BenchError::Timeout {
            what: "the host-to-guest stream".into(),
            after: PASS_LIMIT,
        })?
        .map_err(BenchError::io("the host-to-guest stream"))?;
    let seconds = started.elapsed().as_secs_f64();
    if counted != bytes {
        return Err(BenchError::Vm(format!(
            "the guest counted {counted} bytes of {bytes}"
        )));
    }
    Ok(mb_per_sec(bytes, seconds))
}

/// One stream guest to host, timed on the host from accepting the
/// connection to its end; MB/s.
async fn vsock_to_host(guest: &IoGuest, bytes: u64) -> Result<f64> {
    let mut listener = guest.vsock.listen(SEND_PORT).await?;
    let send = guest.agent.call::<IoBenchReply>(Op::VsockSend {
        port: SEND_PORT,
        bytes,
        timeout_ms: ms(PASS_LIMIT),
    });
    let receive = async {
        let mut stream = listener.accept(PASS_LIMIT).await?;
        let started = Instant::now();
        let received = tokio::time::timeout(PASS_LIMIT, drain_stream(&mut stream))
            .await
            .map_err(|_| BenchError::Timeout {
                what: "the guest-to-host stream".into(),
                after: PASS_LIMIT,
            })?
            .map_err(BenchError::io("the guest-to-host stream"))?;
        let seconds = started.elapsed().as_secs_f64();
        stream
            .write_all(&received.to_le_bytes())
            .await
            .map_err(BenchError::io("acknowledge the stream"))?;
        let _ = stream.shutdown().await;
        Ok::<(u64, f64), BenchError>((received, seconds))
    };
    let (sent, received) = tokio::join!(send, receive);
    let (received, seconds) = received?;
    let sent = sent.map_err(BenchError::uvm("vsock_send"))?;
    if received != bytes || sent.bytes != bytes {
        return Err(BenchError::Vm(format!(
            "the guest sent {} bytes and the host received {received} of {bytes}",
            sent.bytes
        )));
    }
    Ok(mb_per_sec(bytes, seconds))
}

/// Raw frames out of the guest's NIC, counted by the tap; MB/s from the
/// request to the counter's last growth.
async fn net_to_host(guest: &IoGuest, nic: &NicEnds, bytes: u64) -> Result<f64> {
    let counter =
        || tap::rx_bytes(&nic.tap).map_err(BenchError::io(format!("{} rx_bytes", nic.tap)));
    let before = counter()?;
    let started = Instant::now();
    let send = guest.agent.call::<IoBenchReply>(Op::NetSend {
        interface: nic.interface.clone(),
        bytes,
        frame_len: uvm_guest_agent::protocol::MAX_FRAME_LEN,
        timeout_ms: ms(PASS_LIMIT),
    });
    tokio::pin!(send);
    let mut reply = None;
    let mut last = before;
    let mut grew = started;
    loop {
        tokio::select! {
            done = &mut send, if reply.is_none() => {
                reply = Some(done.map_err(BenchError::uvm("net_send"))?);
            }
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        let now = counter()?;
        if now != last {
            last = now;
            grew = Instant::now();
        }
        if reply.is_some() && grew.elapsed() >= NET_SETTLE {
            break;
        }
        if reply.is_none() && grew.elapsed() >= NET_STALL {
            return Err(BenchError::Vm(format!(
                "the NIC stalled: the tap {} counted {} of {bytes} bytes, the last {:.1} s after the request, and nothing for {} s since",
                nic.tap,
                last - before,
                (grew - started).as_secs_f64(),
                NET_STALL.as_secs()
            )));
        }
        if started.elapsed() > PASS_LIMIT + NET_SETTLE {
            return Err(BenchError::Timeout {
                what: "the frames".into(),
                after: PASS_LIMIT,
            });
        }
    }
    let delivered = last - before;
    if let Some(reply) = &reply {
        eprintln!(
            "io-bench: {}: the guest sent {} bytes in {} frames in {:.2} s; the tap counted {delivered} bytes",
            guest.vmm,
            reply.bytes,
            reply.ops,
            reply.elapsed_us as f64 / 1e6
        );
    }
    if delivered == 0 {
        return Err(BenchError::Vm(format!(
            "the tap {} counted no bytes",
            nic.tap
        )));
    }
    Ok(mb_per_sec(delivered, (grew - started).as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_rates_put_the_total_first_and_drop_idle_kinds() {
        let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        };
        let before = map(&[("exits.total", 100), ("exits.io_out", 50), ("exits.hlt", 7)]);
        let after = map(&[
            ("exits.total", 140),
            ("exits.io_out", 60),
            ("exits.hlt", 7),
            ("exits.mmio_write", 30),
        ]);
        let rates = exit_rates(&before, &after, 2.0);
        assert_eq!(
            rates,
            vec![
                ("exits.total".to_owned(), 20.0),
                ("exits.mmio_write".to_owned(), 15.0),
                ("exits.io_out".to_owned(), 5.0),
            ]
        );
        let idle = exit_rates(&before, &before, 1.0);
        assert_eq!(idle, vec![("exits.total".to_owned(), 0.0)]);
        assert!(exit_rates(&before, &after, 0.0).is_empty());
    }
}
