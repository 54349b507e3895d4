//! The host-side connection multiplexer: routes guest packets to
//! connections and listeners, and picks the next packet for the guest.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use super::backend::VsockBackend;
use super::budget::Budget;
use super::connection::{Connection, Verdict};
use super::packet::{HOST_CID, Header, TYPE_STREAM, op};
use super::stream::HostStream;

/// Most connections the muxer keeps; further guest requests are refused.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most guest connections a listener holds that the host has not accepted
/// yet; further ones are refused with RST.
pub const MAX_BACKLOG: usize = 64;
/// Guest data the host buffers for one VM, over all its connections.
pub const VM_BUFFER_BUDGET: usize = 16 << 20;
/// Most RST replies to unknown connections queued at once (extra ones are dropped).
const MAX_STRAY: usize = 1024;
/// First port of the host's ephemeral range for host-initiated connects.
const EPHEMERAL_START: u32 = 49152;

/// Why a host operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxerError {
    /// The port already has a listener.
    #[error("port {0} already has a listener")]
    PortInUse(u32),
    /// No local port or connection slot is left.
    #[error("too many connections")]
    TooManyConnections,
    /// The VM's budget of buffered guest data is spent.
    #[error("the VM's vsock buffer budget is spent")]
    BufferBudgetSpent,
}

type Key = (u32, u32);

/// Connection table, listeners and pending stray replies.
pub struct Muxer {
    guest_cid: u64,
    conns: BTreeMap<Key, Connection>,
    listeners: HashMap<u32, mpsc::Sender<HostStream>>,
    budget: Arc<Budget>,
    stray: VecDeque<Header>,
    next_port: u32,
    last_served: Option<Key>,
    notify: Arc<Notify>,
}

impl Muxer {
    /// A muxer for a guest with CID `guest_cid`; `notify` wakes the pump.
    pub fn new(guest_cid: u64, notify: Arc<Notify>) -> Self {
        Muxer {
            guest_cid,
            conns: BTreeMap::new(),
            listeners: HashMap::new(),
            budget: Arc::new(Budget::new(VM_BUFFER_BUDGET)),
            stray: VecDeque::new(),
            next_port: EPHEMERAL_START,
            last_served: None,
            notify,
        }
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes of the VM's buffer budget not reserved by any connection.
    pub fn buffer_available(&self) -> usize {
        self.budget.available()
    }

    /// Registers a listener on `port`; it holds at most [`MAX_BACKLOG`]
    /// connections not accepted yet.
    pub fn listen(&mut self, port: u32) -> Result<mpsc::Receiver<HostStream>, MuxerError> {
        if self.listeners.contains_key(&port) {
            return Err(MuxerError::PortInUse(port));
        }
        let (tx, rx) = mpsc::channel(MAX_BACKLOG);
        self.listeners.insert(port, tx);
        Ok(rx)
    }

    /// Frees `port`.
    pub fn unlisten(&mut self, port: u32) {
        self.listeners.remove(&port);
    }

    /// Starts a host-initiated connection to guest `port`.
    pub fn connect(&mut self, port: u32) -> Result<HostStream, MuxerError> {
        if self.conns.len() >= MAX_CONNECTIONS {
            return Err(MuxerError::TooManyConnections);
        }
        let range = u32::MAX - EPHEMERAL_START;
        let local = (0..range)
            .map(|i| EPHEMERAL_START + (self.next_port - EPHEMERAL_START + i) % range)
            .find(|p| !self.listeners.contains_key(p) && !self.conns.contains_key(&(*p, port)))
            .ok_or(MuxerError::TooManyConnections)?;
        self.next_port = if local == u32::MAX - 1 {
            EPHEMERAL_START
        } else {
            local + 1
        };
        let conn = Connection::connecting(self.guest_cid, local, port, &self.budget)
            .ok_or(MuxerError::BufferBudgetSpent)?;
        let stream = HostStream::new(conn.shared.clone(), self.notify.clone(), local, port);
        self.conns.insert((local, port), conn);
        Ok(stream)
    }

    fn reply_rst(&mut self, h: &Header) {
        if h.op == op::RST {
            return;
        }
        if self.stray.len() >= MAX_STRAY {
            crate::log_limited!(warn, "too many stray vsock packets; dropping an RST reply");
            return;
        }
        self.stray.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            type_: h.type_,
            op: op::RST,
            ..Header::default()
        });
    }
    fn push_rst(&mut self, rst: Header) {
        if self.stray.len() < MAX_STRAY {
            self.stray.push_back(rst);
        } else {
            crate::log_limited!(warn, "RST queue full; dropping an RST");
        }
    }

    fn accept(&mut self, h: &Header) {
        if self.conns.len() >= MAX_CONNECTIONS {
            crate::log_limited!(
                warn,
                port = h.dst_port,
                "connection limit reached; refusing"
            );
            self.reply_rst(h);
            return;
        }
        let Some(tx) = self.listeners.get(&h.dst_port) else {
            tracing::debug!(port = h.dst_port, "no listener; refusing guest connection");
            self.reply_rst(h);
            return;
        };
        let Some(conn) = Connection::accepted(self.guest_cid, h, &self.budget) else {
            tracing::debug!(port = h.dst_port, "vsock buffer budget spent; refusing");
            self.reply_rst(h);
            return;
        };
        let stream = HostStream::new(
            conn.shared.clone(),
            self.notify.clone(),
            h.dst_port,
            h.src_port,
        );
        match tx.try_send(stream) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(port = h.dst_port, "listener backlog full; refusing");
                self.reply_rst(h);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The listener is going away; its drop frees the port.
                // (The dropped stream marks itself closed; the conn was never stored.)
                self.reply_rst(h);
                return;
            }
        }
        self.conns.insert((h.dst_port, h.src_port), conn);
    }
}

impl VsockBackend for Muxer {
    /// Handles one packet from the guest's tx queue.
    fn handle_packet(&mut self, h: &Header, payload: Vec<u8>) {
        if h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            crate::log_limited!(
                warn,
                src = h.src_cid,
                dst = h.dst_cid,
                "vsock packet with wrong CIDs dropped"
            );
            return;
        }
        if h.type_ != TYPE_STREAM {
            tracing::debug!(type_ = h.type_, "unsupported vsock socket type");
            self.reply_rst(h);
            return;
        }
        let key = (h.dst_port, h.src_port);
        let Some(conn) = self.conns.get_mut(&key) else {
            if h.op == op::REQUEST {
                self.accept(h);
            } else {
                self.reply_rst(h);
            }
            return;
        };
        match conn.handle(h, payload) {
            Verdict::Keep => {}
            Verdict::Remove => {
                self.conns.remove(&key);
            }
            Verdict::Reset => {
                let rst = conn.rst();
                self.conns.remove(&key);
                self.push_rst(rst);
            }
        }
    }

    /// Answers a malformed packet: resets its connection if it has one, or
    /// replies RST.
    fn reject(&mut self, h: &Header) {
        if h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            crate::log_limited!(warn, "malformed vsock packet with wrong CIDs dropped");
            return;
        }
        let key = (h.dst_port, h.src_port);
        match self.conns.remove(&key) {
            Some(conn) => {
                conn.mark_reset();
                self.push_rst(conn.rst());
            }
            None => self.reply_rst(h),
        }
    }

    /// Whether any packet may be waiting for the guest.
    fn has_pending(&self) -> bool {
        !self.stray.is_empty() || !self.conns.is_empty()
    }

    /// The next packet for the guest, with at most `max_payload` payload
    /// bytes; round-robin over connections.
    fn next_packet(&mut self, max_payload: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(h) = self.stray.pop_front() {
            return Some((h, Vec::new()));
        }
        let keys: Vec<Key> = match self.last_served {
            Some(last) => self
                .conns
                .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .chain(self.conns.range(..=last))
                .map(|(k, _)| *k)
                .collect(),
            None => self.conns.keys().copied().collect(),
        };
        for key in keys {
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            if conn.wants_reset() {
                let rst = conn.rst();
                conn.mark_reset();
                self.conns.remove(&key);
                self.last_served = Some(key);
                return Some((rst, Vec::new()));
            }
            if let Some(p) = conn.next_packet(max_payload) {
                self.last_served = Some(key);
                return Some(p);
            }
        }
        None
    }

    /// Resets every connection (device reset); listeners stay.
    fn reset(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            conn.mark_reset();
        }
        self.stray.clear();
        self.last_served = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::virtio::vsock::connection::BUF_ALLOC;
    use crate::virtio::vsock::packet::MAX_PAYLOAD;

    const CID: u64 = 3;

    fn muxer() -> Muxer {
        Muxer::new(CID, Arc::new(Notify::new()))
    }

    fn guest(src_port: u32, dst_port: u32, op: u16) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: 1 << 20,
            ..Header::default()
        }
    }

    /// Every packet the muxer has for the guest, by guest port.
    fn drain(m: &mut Muxer) -> HashMap<u32, Vec<Header>> {
        let mut out: HashMap<u32, Vec<Header>> = HashMap::new();
        while let Some((h, _)) = m.next_packet(MAX_PAYLOAD as usize) {
            out.entry(h.dst_port).or_default().push(h);
        }
        out
    }

    /// Sends `n` bytes of data on a connection, in packets.
    fn send(m: &mut Muxer, src_port: u32, dst_port: u32, mut n: usize) {
        while n > 0 {
            let len = n.min(MAX_PAYLOAD as usize);
            let mut h = guest(src_port, dst_port, op::RW);
            h.len = len as u32;
            m.handle_packet(&h, vec![0x5a; len]);
            n -= len;
        }
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_blocked_host_writer_wakes_once_half_the_buffer_went_to_the_guest() {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        use tokio::io::AsyncWrite;

        use crate::virtio::vsock::connection::{TO_GUEST_CAP, TO_GUEST_LOW_WATER};

        let mut m = muxer();
        let mut rx = m.listen(80).unwrap();
        m.handle_packet(&guest(1000, 80, op::REQUEST), Vec::new());
        drain(&mut m);
        let mut stream = rx.try_recv().unwrap();
        let waker = Arc::new(CountingWaker::default());
        let wakes = || waker.0.load(std::sync::atomic::Ordering::SeqCst);
        let std_waker = std::task::Waker::from(waker.clone());
        let mut cx = Context::from_waker(&std_waker);
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while let Poll::Ready(n) = Pin::new(&mut stream).poll_write(&mut cx, &chunk) {
            written += n.unwrap();
        }
        assert_eq!(written, TO_GUEST_CAP);
        let mut sent = 0;
        while let Some((h, payload)) = m.next_packet(4096) {
            if h.op != op::RW {
                continue;
            }
            sent += payload.len();
            if TO_GUEST_CAP - sent > TO_GUEST_LOW_WATER {
                assert_eq!(
                    wakes(),
                    0,
                    "woken with {} bytes still buffered",
                    TO_GUEST_CAP - sent
                );
            }
            if sent >= TO_GUEST_CAP {
                break;
            }
        }
        assert_eq!(sent, TO_GUEST_CAP, "the guest had credit for all of it");
        assert_eq!(wakes(), 1, "one wake-up for the whole buffer");
    }

    #[test]
    fn the_listener_backlog_is_bounded() {
        let mut m = muxer();
        let _rx = m.listen(80).unwrap();
        let extra = 5;
        for i in 0..(MAX_BACKLOG + extra) as u32 {
            m.handle_packet(&guest(1000 + i, 80, op::REQUEST), Vec::new());
        }
        let replies = drain(&mut m);
        let count = |o| replies.values().flatten().filter(|h| h.op == o).count();
        assert_eq!(
            count(op::RESPONSE),
            MAX_BACKLOG,
            "accepted past the backlog"
        );
        assert_eq!(count(op::RST), extra);
        assert_eq!(m.connection_count(), MAX_BACKLOG);
    }

    #[test]
    fn guest_data_is_bounded_per_vm_and_credit_tells_the_guest() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut m = muxer();
        let mut rx = m.listen(80).unwrap();
        let mut streams = Vec::new();
        let mut buffered = 0usize;
        let mut refused = None;
        for i in 0..5000u32 {
            let port = 1000 + i;
            m.handle_packet(&guest(port, 80, op::REQUEST), Vec::new());
            let replies = drain(&mut m);
            let reply = replies[&port][0];
            if reply.op == op::RST {
                refused = Some(port);
                break;
            }
            assert_eq!(reply.op, op::RESPONSE);
            streams.push((port, rx.try_recv().unwrap()));
            // A well-behaved guest sends what its credit allows.
            let window = reply.buf_alloc.wrapping_sub(reply.fwd_cnt) as usize;
            send(&mut m, port, 80, window);
            buffered += window;
            assert!(
                buffered <= VM_BUFFER_BUDGET,
                "{buffered} bytes of guest data buffered after {} connections",
                i + 1
            );
            assert_eq!(
                m.connection_count(),
                streams.len(),
                "a sender within credit was reset"
            );
        }
        let refused = refused.expect("new connections were never refused");
        assert!(
            buffered + 64 * 1024 > VM_BUFFER_BUDGET,
            "refused early: {buffered}"
        );
        // Sending beyond the credit given resets the connection.
        let (port, _) = streams[streams.len() - 1];
        send(&mut m, port, 80, 1);
        assert_eq!(drain(&mut m)[&port][0].op, op::RST);
        assert_eq!(m.connection_count(), streams.len() - 1);
        // The host reads a connection: its credit comes back, and new
        // connections are accepted again.
        let (port, mut s) = streams.swap_remove(0);
        let mut buf = vec![0u8; 64 * 1024];
        rt.block_on(async { s.read_exact(&mut buf).await.unwrap() });
        let update = drain(&mut m);
        assert!(update[&port].iter().any(|h| h.op == op::CREDIT_UPDATE));
        // Everything closes: the whole budget is free again.
        drop(s);
        m.handle_packet(&guest(port, 80, op::RST), Vec::new());
        for (port, s) in streams {
            drop(s);
            m.handle_packet(&guest(port, 80, op::RST), Vec::new());
        }
        assert_eq!(m.connection_count(), 0);
        assert_eq!(m.buffer_available(), VM_BUFFER_BUDGET);
        m.handle_packet(&guest(refused, 80, op::REQUEST), Vec::new());
        let reply = drain(&mut m)[&refused][0];
        assert_eq!((reply.op, reply.buf_alloc), (op::RESPONSE, BUF_ALLOC));
    }
}
