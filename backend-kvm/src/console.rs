//! The serial console's output: copied to the configured [`ConsoleSink`]
//! (discarded, appended to a file, or logged line by line with target
//! `uvm::console`) and kept in an in-memory tap (the last 1 MiB) that tests
//! and the lab boot check read and wait on.
//!
//! The console is also where a panicking Linux guest is noticed: Debian's
//! cloud kernel has the pvpanic driver only as a module, which the test
//! initramfs does not load, so a line containing [`PANIC_MARKER`] is reported
//! as a guest panic as well (the pvpanic device at `0x505` covers guests that
//! do have the driver).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use uvm_api::ConsoleSink;
use uvm_devices::legacy::{GuestRequest, RequestSink};

use crate::error::VmmError;

/// The line Linux prints when it panics.
pub const PANIC_MARKER: &str = "Kernel panic - not syncing";
/// How much output the tap keeps.
const TAP_CAPACITY: usize = 1 << 20;

/// The last 1 MiB of console output, with change notification.
#[derive(Debug)]
pub struct ConsoleTap {
    buf: Mutex<Vec<u8>>,
    total: watch::Sender<u64>,
}

impl Default for ConsoleTap {
    fn default() -> Self {
        ConsoleTap {
            buf: Mutex::new(Vec::new()),
            total: watch::Sender::new(0),
        }
    }
}

impl ConsoleTap {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.buf.lock();
        buf.extend_from_slice(bytes);
        if buf.len() > TAP_CAPACITY {
            let excess = buf.len() - TAP_CAPACITY;
            buf.drain(..excess);
        }
        drop(buf);
        self.total.send_modify(|t| *t += bytes.len() as u64);
    }

    /// The output kept so far, lossily decoded.
    pub fn text(&self) -> String {
        let buf = self.buf.lock();
        String::from_utf8_lossy(&buf).into_owned()
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

enum Sink {
    Discard,
    File(BufWriter<File>),
    Log,
}

/// The serial device's output writer.
pub struct ConsoleWriter {
    vm_id: String,
    sink: Sink,
    line: Vec<u8>,
    tap: Arc<ConsoleTap>,
    requests: RequestSink,
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
            ConsoleSink::Log => Sink::Log,
            ConsoleSink::File(path) => Sink::File(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(VmmError::io(format!("console file {}", path.display())))?,
            )),
        };
        Ok(ConsoleWriter {
            vm_id: vm_id.to_owned(),
            sink,
            line: Vec::new(),
            tap,
            requests,
        })
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        if let Sink::Log = self.sink {
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
            && let Err(e) = f.write_all(buf)
        {
            tracing::warn!(vm = %self.vm_id, "console file write failed: {e}");
        }
        for &b in buf {
            if b == b'\n' {
                self.end_line();
                if let Sink::File(f) = &mut self.sink {
                    let _ = f.flush();
                }
            } else if self.line.len() < 4096 {
                self.line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::File(f) => f.flush(),
            _ => Ok(()),
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
}
