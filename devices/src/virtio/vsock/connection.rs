//! One connection: the state the host stream shares with the muxer, and
//! the muxer's per-connection protocol state (credit, pending control packets).
//!
//! | state        | entered by                          | left by                                   |
//! |--------------|-------------------------------------|-------------------------------------------|
//! | `Connecting` | host `connect` (REQUEST to send)     | guest RESPONSE → `Established`; RST → gone |
//! | `Established`| guest REQUEST accepted / RESPONSE    | host stream dropped → `Closing`; RST → gone |
//! | `Closing`    | SHUTDOWN(RCV+SEND) sent by the host  | guest RST or SHUTDOWN → gone               |
//!
//! # Credit and the VM's budget
//!
//! Every packet to the guest carries our `buf_alloc` and `fwd_cnt`; together
//! they say the guest may send until its byte count reaches
//! `fwd_cnt + buf_alloc` (our `rx_limit`). That limit only grows, and it
//! grows only by bytes reserved from the VM's [`Budget`] (at most
//! [`BUF_ALLOC`] beyond what the host has read). The reservation
//! (`rx_limit - fwd_cnt`) shrinks as the host reads; the part the guest had
//! not used yet is given back when the connection goes, the rest when the
//! stream is dropped. A guest that sends past `rx_limit` is reset.
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use parking_lot::{Mutex, MutexGuard};

use super::budget::Budget;
use super::packet::{HOST_CID, Header, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, op};

/// Most receive buffer the host offers one connection (our `buf_alloc`).
pub const BUF_ALLOC: u32 = 128 * 1024;
/// Least credit a new connection must get from the VM's budget; with less
/// left, new connections are refused.
pub const MIN_WINDOW: u32 = 4096;
/// Most bytes a host stream buffers towards the guest before writes wait.
pub const TO_GUEST_CAP: usize = 256 * 1024;
/// A host writer waiting for room is woken once the buffer towards the
/// guest has drained to this: it then writes half the buffer at once, and
/// the device moves that in one pass, instead of the writer and the device
/// taking turns one guest packet (4 KiB) at a time, each turn a wake-up and
/// an interrupt.
pub const TO_GUEST_LOW_WATER: usize = TO_GUEST_CAP / 2;

/// Stream-side state, shared between the host stream and the muxer.
pub struct ConnIo {
    /// Bytes from the guest not yet read by the host.
    pub from_guest: VecDeque<u8>,
    /// Bytes written by the host not yet sent to the guest.
    pub to_guest: VecDeque<u8>,
    /// Bytes the host has read (our `fwd_cnt`, wrapping).
    pub fwd_cnt: u32,
    /// The guest will send nothing more (EOF after `from_guest`).
    pub peer_eof: bool,
    /// The guest will receive nothing more (host writes fail).
    pub peer_no_recv: bool,
    /// The host shut its write side down.
    pub host_shut_write: bool,
    /// The host dropped the stream.
    pub host_closed: bool,
    /// The stream must be reset (undelivered connection of a dropped listener).
    pub abort: bool,
    /// The connection was reset (by the guest, a protocol error or a device reset).
    pub reset: bool,
    /// Connection established (for host-initiated connects).
    pub established: bool,
    /// Task waiting to read.
    pub read_waker: Option<Waker>,
    /// Task waiting to write.
    pub write_waker: Option<Waker>,
    /// Task waiting for a connect to complete.
    pub connect_waker: Option<Waker>,
    /// Bytes of the VM's budget this connection holds.
    reserved: usize,
    budget: Arc<Budget>,
}

impl ConnIo {
    fn new(budget: Arc<Budget>) -> Self {
        ConnIo {
            from_guest: VecDeque::new(),
            to_guest: VecDeque::new(),
            fwd_cnt: 0,
            peer_eof: false,
            peer_no_recv: false,
            host_shut_write: false,
            host_closed: false,
            abort: false,
            reset: false,
            established: false,
            read_waker: None,
            write_waker: None,
            connect_waker: None,
            reserved: 0,
            budget,
        }
    }

    /// The host consumed `n` bytes from the guest: `fwd_cnt` grows and
    /// their share of the budget is given back.
    pub fn consume(&mut self, n: usize) {
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
        self.give_back(n);
    }

    fn give_back(&mut self, n: usize) {
        let n = n.min(self.reserved);
        self.reserved -= n;
        self.budget.release(n);
    }

    /// Wakes every waiting task.
    pub fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.connect_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

/// A lock around [`ConnIo`].
pub struct ConnShared(Mutex<ConnIo>);

impl ConnShared {
    /// Stream state of a new connection drawing on `budget`.
    pub fn new(budget: Arc<Budget>) -> Self {
        ConnShared(Mutex::new(ConnIo::new(budget)))
    }

    /// Locks the stream state.
    pub fn lock(&self) -> MutexGuard<'_, ConnIo> {
        self.0.lock()
    }
}

/// Protocol state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Host-initiated, waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
    /// The host closed; waiting for the guest's RST.
    Closing,
}

/// What the muxer should do with a connection after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Keep,
    /// Send RST and forget it.
    Reset,
    /// Forget it without a reply (the guest reset it).
    Remove,
}

/// Muxer-side state of one connection.
pub struct Connection {
    /// Host-side port.
    pub local_port: u32,
    /// Guest-side port.
    pub peer_port: u32,
    /// Protocol state.
    pub state: ConnState,
    /// Shared stream state.
    pub shared: Arc<ConnShared>,
    guest_cid: u64,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Payload bytes sent to the guest.
    tx_cnt: u32,
    /// Payload bytes received from the guest.
    rx_cnt: u32,
    /// What `rx_cnt` may reach: the credit given so far (never shrinks).
    rx_limit: u32,
    send_request: bool,
    send_response: bool,
    send_credit_update: bool,
    credit_requested: bool,
    shutdown_sent: u32,
}

impl Connection {
    /// A connection with its first credit reserved from `budget`, or
    /// `None` if the budget has less than [`MIN_WINDOW`] left.
    fn new(
        guest_cid: u64,
        local_port: u32,
        peer_port: u32,
        state: ConnState,
        budget: &Arc<Budget>,
    ) -> Option<Self> {
        let window = budget.take(BUF_ALLOC as usize);
        if window < MIN_WINDOW as usize {
            budget.release(window);
            return None;
        }
        let shared = ConnShared::new(budget.clone());
        shared.lock().reserved = window;
        Some(Connection {
            local_port,
            peer_port,
            state,
            shared: Arc::new(shared),
            guest_cid,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            rx_cnt: 0,
            // window <= BUF_ALLOC, so it fits.
            rx_limit: window as u32,
            send_request: state == ConnState::Connecting,
            send_response: false,
            send_credit_update: false,
            credit_requested: false,
            shutdown_sent: 0,
        })
    }

    /// A host-initiated connection to guest port `peer_port`; `None` if
    /// the VM's `budget` is spent.
    pub fn connecting(
        guest_cid: u64,
        local_port: u32,
        peer_port: u32,
        budget: &Arc<Budget>,
    ) -> Option<Self> {
        Connection::new(
            guest_cid,
            local_port,
            peer_port,
            ConnState::Connecting,
            budget,
        )
    }

    /// A guest-initiated connection accepted by a host listener; `None` if
    /// the VM's `budget` is spent.
    pub fn accepted(guest_cid: u64, request: &Header, budget: &Arc<Budget>) -> Option<Self> {
        let mut c = Connection::new(
            guest_cid,
            request.dst_port,
            request.src_port,
            ConnState::Established,
            budget,
        )?;
        c.update_peer_credit(request);
        c.send_response = true;
        c.shared.lock().established = true;
        Some(c)
    }

    /// Credit the guest has left (bytes it may still send).
    fn guest_credit(&self) -> u32 {
        self.rx_limit.wrapping_sub(self.rx_cnt)
    }

    /// How far the credit could grow now: up to [`BUF_ALLOC`] beyond what
    /// the host has read, as far as the budget allows.
    fn growth(&self, io: &ConnIo) -> usize {
        if io.peer_eof || self.state == ConnState::Closing {
            return 0;
        }
        let held = self.rx_limit.wrapping_sub(io.fwd_cnt);
        (BUF_ALLOC.saturating_sub(held) as usize).min(io.budget.available())
    }

    /// Grows the credit as far as [`Self::growth`] allows, reserving it;
    /// returns the `buf_alloc` to advertise with `io.fwd_cnt`.
    fn grant(&mut self, io: &mut ConnIo) -> u32 {
        let want = self.growth(io);
        if want > 0 {
            let got = io.budget.take(want);
            io.reserved += got;
            // got <= BUF_ALLOC, so it fits.
            self.rx_limit = self.rx_limit.wrapping_add(got as u32);
        }
        self.rx_limit.wrapping_sub(io.fwd_cnt)
    }

    fn update_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Bytes the guest can still take.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Handles a packet the guest sent on this connection.
    pub fn handle(&mut self, h: &Header, payload: Vec<u8>) -> Verdict {
        self.update_peer_credit(h);
        let mut io = self.shared.lock();
        let verdict = match (h.op, self.state) {
            (op::RST, ConnState::Connecting) => {
                io.reset = true;
                Verdict::Remove
            }
            (op::RST, _) => {
                io.reset = !(io.peer_eof && io.peer_no_recv) && self.state != ConnState::Closing;
                Verdict::Remove
            }
            (op::RESPONSE, ConnState::Connecting) => {
                self.state = ConnState::Established;
                io.established = true;
                Verdict::Keep
            }
            (_, ConnState::Connecting) => {
                io.reset = true;
                Verdict::Reset
            }
            (op::RW, ConnState::Established) => {
                let len = payload.len() as u32;
                if io.peer_eof || len > self.guest_credit() {
                    crate::log_limited!(
                        warn,
                        local = self.local_port,
                        peer = self.peer_port,
                        "guest overran its credit or sent after SHUTDOWN; resetting"
                    );
                    io.reset = true;
                    Verdict::Reset
                } else {
                    self.rx_cnt = self.rx_cnt.wrapping_add(len);
                    if io.host_closed {
                        // Nobody reads: consume at once so credit keeps flowing.
                        io.consume(payload.len());
                    } else {
                        io.from_guest.extend(payload);
                    }
                    Verdict::Keep
                }
            }
            (op::RW, ConnState::Closing) => Verdict::Keep,
            (op::CREDIT_UPDATE, _) => {
                self.credit_requested = false;
                Verdict::Keep
            }
            (op::CREDIT_REQUEST, _) => {
                self.send_credit_update = true;
                Verdict::Keep
            }
            (op::SHUTDOWN, ConnState::Closing) => Verdict::Reset,
            (op::SHUTDOWN, _) => {
                if h.flags & SHUTDOWN_RCV != 0 {
                    io.peer_no_recv = true;
                }
                if h.flags & SHUTDOWN_SEND != 0 {
                    io.peer_eof = true;
                }
                if io.peer_no_recv && io.peer_eof {
                    // Full close from the guest: it waits for our RST.
                    Verdict::Reset
                } else {
                    Verdict::Keep
                }
            }
            _ => {
                crate::log_limited!(
                    warn,
                    op = h.op,
                    "unexpected vsock op on a connection; resetting"
                );
                io.reset = true;
                Verdict::Reset
            }
        };
        io.wake_all();
        verdict
    }

    /// Whether the connection must be reset without waiting for the guest
    /// (host abort, or the host gave up on a connect).
    pub fn wants_reset(&self) -> bool {
        let io = self.shared.lock();
        io.abort || (io.host_closed && self.state == ConnState::Connecting)
    }

    fn header(&self, op: u16, len: u32, flags: u32, buf_alloc: u32, fwd_cnt: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// The RST packet of this connection.
    pub fn rst(&self) -> Header {
        self.header(op::RST, 0, 0, 0, 0)
    }

    /// The next packet to send to the guest with at most `max_payload`
    /// payload bytes, if any.
    pub fn next_packet(&mut self, max_payload: usize) -> Option<(Header, Vec<u8>)> {
        let shared = self.shared.clone();
        let mut io = shared.lock();
        let fwd = io.fwd_cnt;
        // Every packet advertises credit, grown out of the budget first.
        let pkt = |c: &mut Self, io: &mut ConnIo, op: u16, flags: u32, data: Vec<u8>| {
            let buf_alloc = c.grant(io);
            Some((c.header(op, data.len() as u32, flags, buf_alloc, fwd), data))
        };
        if self.state == ConnState::Connecting {
            if self.send_request {
                self.send_request = false;
                return pkt(self, &mut io, op::REQUEST, 0, Vec::new());
            }
            return None;
        }
        if self.send_response {
            self.send_response = false;
            return pkt(self, &mut io, op::RESPONSE, 0, Vec::new());
        }
        if self.state == ConnState::Closing {
            return None;
        }
        if !io.to_guest.is_empty() && !io.peer_no_recv {
            let credit = self.peer_credit() as usize;
            let n = credit
                .min(io.to_guest.len())
                .min(max_payload)
                .min(MAX_PAYLOAD_USIZE);
            if n > 0 {
                let data = take_front(&mut io.to_guest, n);
                self.tx_cnt = self.tx_cnt.wrapping_add(n as u32);
                if io.to_guest.len() <= TO_GUEST_LOW_WATER
                    && let Some(w) = io.write_waker.take()
                {
                    w.wake();
                }
                return pkt(self, &mut io, op::RW, 0, data);
            }
            if credit == 0 && !self.credit_requested {
                self.credit_requested = true;
                return pkt(self, &mut io, op::CREDIT_REQUEST, 0, Vec::new());
            }
        }
        let drained = io.to_guest.is_empty() || io.peer_no_recv;
        if io.host_closed && drained {
            self.state = ConnState::Closing;
            self.shutdown_sent = SHUTDOWN_RCV | SHUTDOWN_SEND;
            return pkt(
                self,
                &mut io,
                op::SHUTDOWN,
                SHUTDOWN_RCV | SHUTDOWN_SEND,
                Vec::new(),
            );
        }
        if io.host_shut_write && drained && self.shutdown_sent & SHUTDOWN_SEND == 0 {
            self.shutdown_sent |= SHUTDOWN_SEND;
            return pkt(self, &mut io, op::SHUTDOWN, SHUTDOWN_SEND, Vec::new());
        }
        // Announce credit when it can grow by half a buffer, or at all
        // while the guest is (nearly) out of it, or when asked.
        let growth = self.growth(&io);
        let starved = self.guest_credit() < MIN_WINDOW;
        let worth = growth >= BUF_ALLOC as usize / 2 || (growth > 0 && starved);
        if !io.peer_eof && (self.send_credit_update || worth) {
            self.send_credit_update = false;
            return pkt(self, &mut io, op::CREDIT_UPDATE, 0, Vec::new());
        }
        None
    }

    /// Bytes of the VM's budget this connection holds (for tests and stats).
    pub fn reserved(&self) -> usize {
        self.shared.lock().reserved
    }

    /// Marks the stream reset (device reset or muxer-initiated RST).
    pub fn mark_reset(&self) {
        let mut io = self.shared.lock();
        io.reset = true;
        io.wake_all();
    }
}

impl Drop for Connection {
    /// The guest can send nothing more: the credit it had not used goes
    /// back to the budget (what it sent stays reserved until read).
    fn drop(&mut self) {
        let unused = self.guest_credit() as usize;
        self.shared.lock().give_back(unused);
    }
}

const MAX_PAYLOAD_USIZE: usize = super::packet::MAX_PAYLOAD as usize;

/// The first `n` bytes of `queue` (at most its length), removed, copied
/// slice by slice: collecting a drain copies byte by byte, a cost that
/// showed at every 4 KiB packet towards the guest.
fn take_front(queue: &mut VecDeque<u8>, n: usize) -> Vec<u8> {
    let n = n.min(queue.len());
    let mut data = Vec::with_capacity(n);
    let (a, b) = queue.as_slices();
    let from_a = n.min(a.len());
    data.extend_from_slice(&a[..from_a]);
    data.extend_from_slice(&b[..n - from_a]);
    queue.drain(..n);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_front_copies_across_the_wrap_in_order() {
        let mut q: VecDeque<u8> = VecDeque::with_capacity(8);
        q.extend([0, 1, 2, 3, 4, 5]);
        q.drain(..4);
        q.extend([6, 7, 8, 9, 10]);
        // The ring now wraps: [4, 5] then [6..=10].
        assert_eq!(take_front(&mut q, 3), [4, 5, 6]);
        assert_eq!(take_front(&mut q, 100), [7, 8, 9, 10]);
        assert!(q.is_empty());
        assert!(take_front(&mut q, 4).is_empty());
    }
}
