//! Where a virtio-net device sends and receives Ethernet frames.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use parking_lot::Mutex;

use super::rx_pump::RxWaker;

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

/// A backend that wakes a parked receive pump whenever the device receives
/// from it on another thread than the pump's: the device only receives
/// with receive buffers posted, so that is the sign the pump waits for (see
/// [`super::rx_pump`]).
pub struct WakeOnRecv {
    inner: Box<dyn NetBackend>,
    waker: RxWaker,
}

impl WakeOnRecv {
    /// `inner`, waking `waker`'s pump.
    pub fn new(inner: Box<dyn NetBackend>, waker: RxWaker) -> Self {
        WakeOnRecv { inner, waker }
    }
}

impl NetBackend for WakeOnRecv {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.inner.send(frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.waker.wake();
        self.inner.recv(buf)
    }

    fn fd(&self) -> Option<RawFd> {
        self.inner.fd()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use vmm_sys_util::eventfd::EventFd;

    use super::*;
    use crate::virtio::net::rx_pump::{RxPump, RxStatus};

    #[test]
    fn a_receive_outside_the_pump_wakes_it_from_parking() {
        let readable = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        readable.write(1).unwrap();
        let waker = RxWaker::new().unwrap();
        let mut backend = WakeOnRecv::new(Box::new(MemoryBackend::new()), waker.clone());
        let passes = Arc::new(AtomicUsize::new(0));
        let p = passes.clone();
        let fd = readable.as_raw_fd();
        let pump = RxPump::start_with_waker("t", fd, waker, move || {
            let _keep_open = &readable;
            p.fetch_add(1, Ordering::Relaxed);
            RxStatus::NoBuffers
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let before = passes.load(Ordering::Relaxed);
        let mut buf = [0u8; 64];
        assert_eq!(
            backend.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let deadline = Instant::now() + Duration::from_millis(50);
        while passes.load(Ordering::Relaxed) == before {
            assert!(
                Instant::now() < deadline,
                "the receive did not wake the pump"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(pump);
    }
}
