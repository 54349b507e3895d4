//! The guest side of the I/O benchmark ops ([`crate::protocol::Op::DiskBench`],
//! `vsock_sink`, `vsock_send`, `net_send`): the loops that move the bytes
//! and time them. The checks of their arguments are in
//! [`crate::handlers::iobench`]; the parts that need no device (the disk
//! loops on any file, the stream loops on any socket) are generic so that
//! tests run them on plain files and socket pairs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::flood::RawSocket;
use crate::protocol::{DiskBenchPlan, DiskPattern, IoBenchReply};

/// Alignment of the I/O buffers (`O_DIRECT` needs the logical block size;
/// a page covers every disk).
pub const ALIGN: usize = 4096;
/// Bytes per write of a stream.
const STREAM_CHUNK: usize = 64 << 10;
/// The most bytes read back as a stream's acknowledgement.
const MAX_ACK: u64 = 4096;

/// A zeroed buffer of `len` bytes starting on an [`ALIGN`] boundary.
#[derive(Debug)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// Allocates it, filled with `fill`.
    pub fn new(len: usize, fill: u8) -> io::Result<Self> {
        let raw = vec![fill; len + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        if start >= ALIGN {
            return Err(io::Error::other("cannot align an I/O buffer"));
        }
        Ok(AlignedBuf { raw, start, len })
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The aligned bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: out of time"))
}

/// A small, fast pseudo-random generator (xorshift64*), seeded per thread.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Runs a checked `plan` (see [`crate::handlers::iobench`]) on `file`,
/// opened for it; a sequential pass that outlasts `duration_ms` is a
/// `TimedOut` error.
pub fn disk_run(file: &File, plan: &DiskBenchPlan) -> io::Result<IoBenchReply> {
    let block = u64::from(plan.block_size);
    let blocks = plan.span / block;
    let threads = u64::from(plan.threads).clamp(1, blocks.max(1));
    let limit = Duration::from_millis(plan.duration_ms);
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    std::thread::scope(|scope| -> io::Result<()> {
        let mut workers = Vec::new();
        for t in 0..threads {
            let ops = ops.clone();
            let (first, count) = match plan.pattern {
                // Contiguous slices, the last one taking the remainder.
                DiskPattern::SeqRead | DiskPattern::SeqWrite => {
                    let share = blocks / threads;
                    let extra = if t == threads - 1 {
                        blocks % threads
                    } else {
                        0
                    };
                    (t * share, share + extra)
                }
                DiskPattern::RandRead => (0, blocks),
            };
            workers.push(scope.spawn(move || -> io::Result<()> {
                let fill = if plan.pattern == DiskPattern::SeqWrite {
                    0xa5
                } else {
                    0
                };
                let mut buf = AlignedBuf::new(plan.block_size as usize, fill)?;
                match plan.pattern {
                    DiskPattern::SeqRead | DiskPattern::SeqWrite => {
                        for n in first..first + count {
                            if Instant::now() >= deadline {
                                return Err(timed_out("the sequential pass"));
                            }
                            let offset = n * block;
                            if plan.pattern == DiskPattern::SeqRead {
                                file.read_exact_at(buf.as_mut_slice(), offset)?;
                            } else {
                                file.write_all_at(buf.as_slice(), offset)?;
                            }
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    DiskPattern::RandRead => {
                        let mut rng = Rng::new((t + 1) ^ u64::from(std::process::id()));
                        while Instant::now() < deadline {
                            let offset = rng.below(count) * block;
                            file.read_exact_at(buf.as_mut_slice(), offset)?;
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            }));
        }
        let mut result = Ok(());
        for worker in workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a benchmark thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })?;
    if plan.pattern == DiskPattern::SeqWrite {
        file.sync_data()?;
    }
    let elapsed_us = elapsed_us(started);
    let ops = ops.load(Ordering::Relaxed);
    Ok(IoBenchReply {
        bytes: ops * block,
        ops,
        elapsed_us,
    })
}

/// Reads `stream` until EOF (at most `max` bytes, then `InvalidData`),
/// writes the count back as 8 bytes little-endian; returns the count.
pub fn sink<S: Read + Write>(mut stream: S, max: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n;
        if total > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the peer sent more than {max} bytes"),
            ));
        }
    }
    stream.write_all(&total.to_le_bytes())?;
    stream.flush()?;
    Ok(total)
}

/// Writes `bytes` bytes to `stream` before `deadline`, half-closes it with
/// `half_close`, and reads what the peer sends until it closes (at most
/// 4 KiB, its acknowledgement). The time runs from the first write to the
/// peer's close.
pub fn send<S: Read + Write>(
    mut stream: S,
    bytes: u64,
    deadline: Instant,
    half_close: impl FnOnce(&S) -> io::Result<()>,
) -> io::Result<IoBenchReply> {
    let chunk = vec![0x5au8; STREAM_CHUNK];
    let started = Instant::now();
    let mut left = bytes;
    let mut writes = 0u64;
    while left > 0 {
        if Instant::now() >= deadline {
            return Err(timed_out("the stream"));
        }
        let n = usize::try_from(left.min(STREAM_CHUNK as u64)).unwrap_or(STREAM_CHUNK);
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
        writes += 1;
    }
    stream.flush()?;
    half_close(&stream)?;
    let mut ack = Vec::new();
    (&mut stream).take(MAX_ACK).read_to_end(&mut ack)?;
    Ok(IoBenchReply {
        bytes,
        ops: writes,
        elapsed_us: elapsed_us(started),
    })
}

/// Binds guest vsock `port` and serves one [`sink`] connection on a thread
/// (waiting at most `timeout` for it, each read bounded by `timeout`);
/// returns once the port is bound.
pub fn spawn_vsock_sink(port: u32, timeout: Duration, max: u64) -> io::Result<()> {
    let listener = crate::server::VsockListener::bind(port)?;
    std::thread::Builder::new()
        .name(format!("vsock-sink-{port}"))
        .spawn(move || {
            let served = listener.accept_within(timeout).and_then(|(stream, _)| {
                crate::vsock::set_timeouts(&stream, timeout)?;
                sink(stream, max)
            });
            if let Err(e) = served {
                eprintln!("uvm-agent: vsock sink on port {port}: {e}");
            }
        })?;
    Ok(())
}

/// [`send`] over a vsock connection to `cid:port`.
pub fn vsock_send(cid: u32, port: u32, bytes: u64, timeout: Duration) -> io::Result<IoBenchReply> {
    let deadline = Instant::now() + timeout;
    let stream = crate::vsock::connect(cid, port, timeout)?;
    send(stream, bytes, deadline, crate::vsock::shutdown_write)
}

/// Sends broadcast frames of `frame_len` bytes out of `interface` until
/// `bytes` bytes have gone out (the last frame may be shorter, never below
/// the Ethernet minimum); a run that outlasts `timeout` is `TimedOut`.
pub fn net_send(
    interface: &str,
    bytes: u64,
    frame_len: usize,
    timeout: Duration,
) -> io::Result<IoBenchReply> {
    let socket = RawSocket::bind(interface)?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut sent = 0u64;
    let mut frames = 0u64;
    while sent < bytes {
        if Instant::now() >= deadline {
            return Err(timed_out("sending frames"));
        }
        let len = usize::try_from(bytes - sent)
            .unwrap_or(frame_len)
            .clamp(60, frame_len);
        if socket.send_frame(len)? {
            sent += len as u64;
            frames += 1;
        }
    }
    Ok(IoBenchReply {
        bytes: sent,
        ops: frames,
        elapsed_us: elapsed_us(started),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn plan(pattern: DiskPattern, threads: u32, duration_ms: u64) -> DiskBenchPlan {
        DiskBenchPlan {
            device: "disk".into(),
            pattern,
            block_size: 4096,
            span: 64 << 10,
            threads,
            duration_ms,
            direct: false,
        }
    }

    #[test]
    fn buffers_are_aligned() {
        let mut buf = AlignedBuf::new(8192, 7).unwrap();
        assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(buf.as_mut_slice().len(), 8192);
        assert!(buf.as_slice().iter().all(|&b| b == 7));
    }

    #[test]
    fn random_offsets_stay_in_range_and_vary() {
        let mut rng = Rng::new(3);
        let values: Vec<u64> = (0..1000).map(|_| rng.below(16)).collect();
        assert!(values.iter().all(|&v| v < 16));
        assert!((0..16).all(|v| values.contains(&v)));
    }

    #[test]
    fn disk_patterns_run_on_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(64 << 10).unwrap();
        let written = disk_run(&file, &plan(DiskPattern::SeqWrite, 3, 10_000)).unwrap();
        assert_eq!((written.bytes, written.ops), (64 << 10, 16));
        assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0xa5));
        let read = disk_run(&file, &plan(DiskPattern::SeqRead, 1, 10_000)).unwrap();
        assert_eq!((read.bytes, read.ops), (64 << 10, 16));
        let random = disk_run(&file, &plan(DiskPattern::RandRead, 4, 50)).unwrap();
        assert!(random.ops > 0 && random.bytes == random.ops * 4096);
        assert!(random.elapsed_us >= 50_000);
        // A pass with no time left is a timeout.
        let late = disk_run(&file, &plan(DiskPattern::SeqRead, 1, 0)).unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn streams_are_counted_and_acknowledged() {
        let (guest, host) = UnixStream::pair().unwrap();
        let sinker = std::thread::spawn(move || sink(host, 1 << 20));
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = send(guest, 200_000, deadline, |s| {
            s.shutdown(std::net::Shutdown::Write)
        })
        .unwrap();
        assert_eq!(reply.bytes, 200_000);
        assert_eq!(reply.ops, 4);
        assert_eq!(sinker.join().unwrap().unwrap(), 200_000);
    }

    #[test]
    fn a_sink_refuses_too_much() {
        let (mut guest, host) = UnixStream::pair().unwrap();
        let sinker = std::thread::spawn(move || sink(host, 10));
        guest.write_all(&[0; 11]).unwrap();
        guest.shutdown(std::net::Shutdown::Write).unwrap();
        let error = sinker.join().unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
