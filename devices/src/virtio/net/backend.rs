//! Where a virtio-net device sends and receives Ethernet frames.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use parking_lot::Mutex;

/// A source and sink of Ethernet frames (no virtio header).
pub trait NetBackend: Send {
    /// Sends one frame. `WouldBlock` means the host side is full and the
    /// frame is dropped (Ethernet semantics).
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Receives one frame into `buf`, returning its length; `WouldBlock`
    /// when none is waiting. A frame longer than `buf` is cut.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// A file descriptor that polls readable when a frame is waiting, if
    /// the backend has one.
    fn fd(&self) -> Option<RawFd>;
}

/// Frames queued in memory: what the guest sent, what it will receive.
#[derive(Debug, Default)]
pub struct MemoryQueues {
    /// Frames the guest sent, oldest first.
    pub sent: Vec<Vec<u8>>,
    /// Frames waiting for the guest, oldest first.
    pub to_guest: VecDeque<Vec<u8>>,
}

/// An in-memory backend; clones share the same queues.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    queues: Arc<Mutex<MemoryQueues>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    /// Runs `f` on the shared queues.
    pub fn with<R>(&self, f: impl FnOnce(&mut MemoryQueues) -> R) -> R {
        f(&mut self.queues.lock())
    }

    /// Queues a frame for the guest.
    pub fn push_to_guest(&self, frame: &[u8]) {
        self.with(|q| q.to_guest.push_back(frame.to_vec()));
    }

    /// Takes the frames the guest sent.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        self.with(|q| std::mem::take(&mut q.sent))
    }
}

impl NetBackend for MemoryBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.with(|q| q.sent.push(frame.to_vec()));
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|q| match q.to_guest.pop_front() {
            Some(f) => {
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    fn fd(&self) -> Option<RawFd> {
        None
    }
}
