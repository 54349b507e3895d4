//! The serial console's output: copied to the configured [`ConsoleSink`]
//! (discarded, appended to a file, or logged line by line with target
//! `uvm::console`) and kept in an in-memory tap (a ring of the last 1 MiB)
//! that tests and the lab boot check read and wait on.
//!
//! The guest decides how much it prints, so every copy is bounded: the tap
//! is a ring (each byte costs O(1) however much came before), the file
//! sink stops at [`CONSOLE_FILE_CAP`] bytes with one note line saying so
//! (what comes after is counted and dropped), and the log sink lets at most
//! [`CONSOLE_LOG_BURST`] lines per second through (see
//! [`uvm_devices::ratelimit`]).
//!
//! The console is also where a panicking Linux guest is noticed: Debian's
//! cloud kernel has the pvpanic driver only as a module, which the test
//! initramfs does not load, so a line containing [`PANIC_MARKER`] is reported
//! as a guest panic as well (the pvpanic device at `0x505` covers guests that
//! do have the driver).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use uvm_api::ConsoleSink;
use uvm_devices::legacy::{GuestRequest, RequestSink};
use uvm_devices::ratelimit::LogBudget;

use crate::error::VmmError;

/// The line Linux prints when it panics.
pub const PANIC_MARKER: &str = "Kernel panic - not syncing";
/// How much output the tap keeps.
const TAP_CAPACITY: usize = 1 << 20;
/// How many bytes of guest output a console file receives (per VM run):
/// then one note line, and the rest is dropped.
pub const CONSOLE_FILE_CAP: u64 = 64 << 20;
/// How many console lines per second the log sink emits; the others are
/// counted and reported with the next line let through.
pub const CONSOLE_LOG_BURST: u32 = 200;

/// A ring of the last `capacity` bytes written.
#[derive(Debug)]
struct Ring {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Ring {
            bytes: VecDeque::new(),
            capacity,
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity: O(1)
    /// per byte written (dropping from the front moves nothing).
    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let excess = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..excess);
        self.bytes.extend(data);
    }

    /// The bytes kept, oldest first.
    fn contents(&self) -> Vec<u8> {
        let (a, b) = self.bytes.as_slices();
        let mut out = Vec::with_capacity(a.len() + b.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out
    }
}

/// The last 1 MiB of console output, with change notification.
#[derive(Debug)]
pub struct ConsoleTap {
    buf: Mutex<Ring>,
    total: watch::Sender<u64>,
}

impl Default for ConsoleTap {
    fn default() -> Self {
        ConsoleTap::with_capacity(TAP_CAPACITY)
    }
}

impl ConsoleTap {
    /// A tap keeping the last `capacity` bytes.
    fn with_capacity(capacity: usize) -> Self {
        ConsoleTap {
            buf: Mutex::new(Ring::new(capacity)),
            total: watch::Sender::new(0),
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.buf.lock().push(bytes);
        self.total.send_modify(|t| *t += bytes.len() as u64);
    }

    /// The output kept so far, lossily decoded.
    pub fn text(&self) -> String {
        let kept = self.buf.lock().contents();
        String::from_utf8_lossy(&kept).into_owned()
    }

    /// Total bytes written since start.
    pub fn total_bytes(&self) -> u64 {
        *self.total.borrow()
    }

    /// Waits until the kept output contains `needle`; false on timeout.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let mut rx = self.total.subscribe();
        let wait = async {
            loop {
                if self.text().contains(needle) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// A console file that takes at most `cap` bytes of guest output.
struct CappedFile {
    out: BufWriter<File>,
    cap: u64,
    written: u64,
    /// Bytes dropped after the cap.
    dropped: u64,
}

impl CappedFile {
    /// Writes what fits under the cap; at the cap, writes the note line
    /// once and counts the rest as dropped.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let room = self.cap.saturating_sub(self.written);
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if self.dropped == 0 && take > 0 {
            self.out.write_all(&buf[..take])?;
            self.written += take as u64;
        }
        let rest = (buf.len() - take) as u64;
        if rest == 0 {
            return Ok(());
        }
        let first_drop = self.dropped == 0;
        self.dropped += rest;
        if first_drop {
            tracing::warn!(
                cap = self.cap,
                "console output reached the file's cap; further output is dropped"
            );
            write!(
                self.out,
                "\n[uvm: console output truncated at {} bytes]\n",
                self.cap
            )?;
            self.out.flush()?;
        }
        Ok(())
    }
}

enum Sink {
    Discard,
    File(CappedFile),
    Log(LogBudget),
}

/// The serial device's output writer.
pub struct ConsoleWriter {
    vm_id: String,
    sink: Sink,
    line: Vec<u8>,
    tap: Arc<ConsoleTap>,
    requests: RequestSink,
    /// Budget of the "console file write failed" warning.
    write_errors: LogBudget,
}

impl ConsoleWriter {
    /// A writer for VM `vm_id` into `sink`, keeping a copy in `tap` and
    /// reporting a panic line through `requests`.
    pub fn new(
        vm_id: &str,
        sink: &ConsoleSink,
        tap: Arc<ConsoleTap>,
        requests: RequestSink,
    ) -> Result<Self, VmmError> {
        let sink = match sink {
            ConsoleSink::Discard => Sink::Discard,
            ConsoleSink::Log => {
                Sink::Log(LogBudget::new(CONSOLE_LOG_BURST, Duration::from_secs(1)))
            }
            ConsoleSink::File(path) => Sink::File(CappedFile {
                out: BufWriter::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(VmmError::io(format!("console file {}", path.display())))?,
                ),
                cap: CONSOLE_FILE_CAP,
                written: 0,
                dropped: 0,
            }),
        };
        Ok(ConsoleWriter {
            vm_id: vm_id.to_owned(),
            sink,
            line: Vec::new(),
            tap,
            requests,
            write_errors: LogBudget::new(1, Duration::from_secs(10)),
        })
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        if let Sink::Log(budget) = &self.sink
            && let Some(suppressed) = budget.check()
        {
            if suppressed > 0 {
                tracing::warn!(target: "uvm::console", vm = %self.vm_id, "{suppressed} console lines suppressed");
            }
            tracing::info!(target: "uvm::console", vm = %self.vm_id, "{text}");
        }
        if text.contains(PANIC_MARKER) {
            (self.requests)(GuestRequest::Panic);
        }
        self.line.clear();
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tap.push(buf);
        if let Sink::File(f) = &mut self.sink
            && let Err(e) = f.write(buf)
            && let Some(suppressed) = self.write_errors.check()
        {
            tracing::warn!(vm = %self.vm_id, suppressed, "console file write failed: {e}");
        }
        for &b in buf {
            if b == b'\n' {
                self.end_line();
                if let Sink::File(f) = &mut self.sink {
                    let _ = f.out.flush();
                }
            } else if self.line.len() < 4096 {
                self.line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::File(f) => f.out.flush(),
            _ => Ok(()),
        }
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        if let Sink::File(f) = &self.sink
            && f.dropped > 0
        {
            tracing::warn!(vm = %self.vm_id, dropped = f.dropped, cap = f.cap, "console output past the file's cap was dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tap_file_and_panic_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let tap = Arc::new(ConsoleTap::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut w = ConsoleWriter::new(
            "vm",
            &ConsoleSink::File(path.clone()),
            tap.clone(),
            Arc::new(move |r| s.lock().push(r)),
        )
        .unwrap();
        w.write_all(b"hello\r\n[ 1.0] Kernel panic - not syncing: boom\n")
            .unwrap();
        assert!(tap.wait_for("hello", Duration::from_millis(10)).await);
        assert!(!tap.wait_for("absent", Duration::from_millis(10)).await);
        assert_eq!(*seen.lock(), vec![GuestRequest::Panic]);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("hello"));
        assert_eq!(tap.total_bytes(), 47);
    }

    #[test]
    fn tap_stays_cheap_past_its_capacity() {
        let tap = ConsoleTap::default();
        tap.push(&vec![b'a'; TAP_CAPACITY]);
        let start = std::time::Instant::now();
        for i in 0..65_536u32 {
            tap.push(&[b'0' + (i % 10) as u8]);
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "64 KiB past the cap took {took:?}"
        );
        let text = tap.text();
        assert_eq!(text.len(), TAP_CAPACITY);
        assert!(text.ends_with("456789012345"));
        assert_eq!(tap.total_bytes(), TAP_CAPACITY as u64 + 65_536);
    }

    #[test]
    fn console_file_stops_at_the_cap_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let tap = Arc::new(ConsoleTap::default());
        let mut w = ConsoleWriter::new(
            "vm",
            &ConsoleSink::File(path.clone()),
            tap,
            Arc::new(|_| {}),
        )
        .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..66 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"more\n").unwrap();
        w.flush().unwrap();
        let written = std::fs::read(&path).unwrap();
        let cap = CONSOLE_FILE_CAP as usize;
        let note = format!("\n[uvm: console output truncated at {cap} bytes]\n");
        assert_eq!(written.len(), cap + note.len());
        assert!(written.ends_with(note.as_bytes()));
        assert!(written[..cap].iter().all(|&b| b == b'x'));
        match &w.sink {
            Sink::File(f) => assert_eq!(f.dropped, 2 * (1 << 20) + 5),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_ring_keeps_the_last_bytes_across_wraps() {
        let tap = ConsoleTap::with_capacity(8);
        tap.push(b"abc");
        assert_eq!(tap.text(), "abc");
        tap.push(b"defgh");
        assert_eq!(tap.text(), "abcdefgh");
        tap.push(b"ij");
        assert_eq!(tap.text(), "cdefghij");
        for b in b"klmnopqrstu" {
            tap.push(&[*b]);
        }
        assert_eq!(tap.text(), "nopqrstu");
        tap.push(b"0123456789abcdef");
        assert_eq!(tap.text(), "89abcdef");
        tap.push(b"");
        assert_eq!(tap.text(), "89abcdef");
        assert_eq!(tap.total_bytes(), 3 + 5 + 2 + 11 + 16);
    }
}
