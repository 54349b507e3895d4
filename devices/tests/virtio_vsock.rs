//! The vsock device and its host muxer, with the test playing the guest
//! driver on the rx/tx queues through the virtio-pci transport.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::vsock::connection::BUF_ALLOC;
use uvm_devices::virtio::vsock::packet::{HDR_SIZE, Header, SHUTDOWN_RCV, SHUTDOWN_SEND, op};
use uvm_devices::virtio::vsock::{MuxerError, VsockDevice, VsockHost, VsockKick};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

const GUEST_CID: u64 = 3;

struct Guest {
    m: Machine,
    host: VsockHost,
    kick: VsockKick,
    rx: GuestQueue,
    tx: GuestQueue,
    buf_alloc: u32,
    fwd_cnt: u32,
}

impl Guest {
    fn new() -> Self {
        let host = VsockHost::new(GUEST_CID);
        let dev = VsockDevice::new(
            GUEST_CID,
            host.backend(),
            &tokio::runtime::Handle::current(),
        );
        let kick = dev.kicker();
        let m = Machine::new(Box::new(dev));
        let caps = m.probe();
        m.enable_msix(&caps);
        assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
        let mut rx = m.setup_queue(&caps, 0, 256, 1);
        let tx = m.setup_queue(&caps, 1, 256, 2);
        let _ev = m.setup_queue(&caps, 2, 256, 3);
        m.driver_ok(&caps);
        let mem = m.mem();
        for _ in 0..64 {
            let a = rx.alloc(4096 + HDR_SIZE as u32);
            rx.add(&mem, &[(a, 4096 + HDR_SIZE as u32, true)]).unwrap();
        }
        m.notify(&rx);
        Guest {
            m,
            host,
            kick,
            rx,
            tx,
            buf_alloc: 1 << 20,
            fwd_cnt: 0,
        }
    }

    fn hdr(&self, src_port: u32, dst_port: u32, op: u16) -> Header {
        Header {
            src_cid: GUEST_CID,
            dst_cid: 2,
            src_port,
            dst_port,
            type_: 1,
            op,
            buf_alloc: self.buf_alloc,
            fwd_cnt: self.fwd_cnt,
            ..Header::default()
        }
    }

    fn send(&mut self, mut h: Header, payload: &[u8]) {
        let mem = self.m.mem();
        h.len = payload.len() as u32;
        let a = self.tx.alloc(HDR_SIZE as u32);
        mem.write_slice(&h.to_bytes(), GuestAddress(a)).unwrap();
        let mut bufs = vec![(a, HDR_SIZE as u32, false)];
        if !payload.is_empty() {
            let p = self.tx.alloc(payload.len() as u32);
            mem.write_slice(payload, GuestAddress(p)).unwrap();
            bufs.push((p, payload.len() as u32, false));
        }
        self.tx.add(&mem, &bufs).unwrap();
        self.m.notify(&self.tx);
        self.tx.take_used(&mem);
    }

    fn op(&mut self, src: u32, dst: u32, op: u16, flags: u32) {
        let mut h = self.hdr(src, dst, op);
        h.flags = flags;
        self.send(h, &[]);
    }

    /// Packets the device delivered so far; rx buffers are recycled.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.kick.kick();
        let mem = self.m.mem();
        let mut out = Vec::new();
        for (_, len, bufs) in self.rx.take_used(&mem) {
            let (addr, cap) = bufs[0];
            assert!(len as usize >= HDR_SIZE && len <= cap);
            let mut raw = [0u8; HDR_SIZE];
            mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
            let h = Header::from_bytes(&raw);
            assert_eq!(h.len as usize + HDR_SIZE, len as usize);
            let mut data = vec![0u8; h.len as usize];
            mem.read_slice(&mut data, GuestAddress(addr + HDR_SIZE as u64))
                .unwrap();
            assert_eq!((h.src_cid, h.dst_cid), (2, GUEST_CID));
            out.push((h, data));
            self.rx.add(&mem, &[(addr, cap, true)]).unwrap();
        }
        if !out.is_empty() {
            self.m.notify(&self.rx);
        }
        out
    }

    /// Waits until `pred` matches a received packet; returns everything seen.
    async fn expect(&mut self, pred: impl Fn(&Header) -> bool) -> Vec<(Header, Vec<u8>)> {
        let mut seen = Vec::new();
        for _ in 0..500 {
            let got = self.recv();
            let found = got.iter().any(|(h, _)| pred(h));
            seen.extend(got);
            if found {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("expected packet not seen; got {seen:?}");
    }

    async fn connect_to_host(&mut self, src: u32, port: u32) {
        self.op(src, port, op::REQUEST, 0);
        let got = self
            .expect(|h| h.dst_port == src && (h.op == op::RESPONSE || h.op == op::RST))
            .await;
        assert!(
            got.iter()
                .any(|(h, _)| h.op == op::RESPONSE && h.dst_port == src)
        );
    }
}

/// The payload bytes of the RW packets in `got`, in order.
fn rw_payload(got: &[(Header, Vec<u8>)]) -> Vec<u8> {
    got.iter()
        .filter(|(h, _)| h.op == op::RW)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

async fn read_exactly(s: &mut (impl AsyncReadExt + Unpin), n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_connects_data_flows_and_half_close() {
    let mut g = Guest::new();
    let mut listener = g.host.listen(1234).unwrap();
    assert_eq!(g.host.listen(1234).err(), Some(MuxerError::PortInUse(1234)));
    g.connect_to_host(40000, 1234).await;
    let mut s = listener.accept().await.unwrap();
    assert_eq!((s.local_port(), s.peer_port()), (1234, 40000));

    let h = g.hdr(40000, 1234, op::RW);
    g.send(h, b"hello");
    assert_eq!(read_exactly(&mut s, 5).await, b"hello");

    s.write_all(b"world").await.unwrap();
    let data = rw_payload(&g.expect(|h| h.op == op::RW).await);
    assert_eq!(data, b"world");

    // Guest half-closes its send side: host reads EOF, can still write.
    g.op(40000, 1234, op::SHUTDOWN, SHUTDOWN_SEND);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    s.write_all(b"more").await.unwrap();
    g.expect(|h| h.op == op::RW).await;

    // Host half-closes: guest sees SHUTDOWN with the SEND flag.
    s.shutdown().await.unwrap();
    let got = g.expect(|h| h.op == op::SHUTDOWN).await;
    let sd = got.iter().find(|(h, _)| h.op == op::SHUTDOWN).unwrap();
    assert_eq!(sd.0.flags, SHUTDOWN_SEND);
    assert!(s.write_all(b"x").await.is_err());

    // Host drops: full SHUTDOWN, the guest answers RST, the connection is gone.
    drop(s);
    let got = g.expect(|h| h.op == op::SHUTDOWN).await;
    assert!(
        got.iter()
            .any(|(h, _)| h.op == op::SHUTDOWN && h.flags == SHUTDOWN_RCV | SHUTDOWN_SEND)
    );
    g.op(40000, 1234, op::RST, 0);
    assert_eq!(g.host.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_full_close_gives_eof_and_rst() {
    let mut g = Guest::new();
    let mut listener = g.host.listen(80).unwrap();
    g.connect_to_host(1111, 80).await;
    let mut s = listener.accept().await.unwrap();
    let h = g.hdr(1111, 80, op::RW);
    g.send(h, b"bye");
    g.op(1111, 80, op::SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND);
    g.expect(|h| h.op == op::RST && h.dst_port == 1111).await;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"bye");
    assert!(s.write_all(b"x").await.is_err());
    assert_eq!(g.host.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_connect_accepted_and_refused() {
    let mut g = Guest::new();
    let connect = g.host.connect(5000).unwrap();
    let got = g.expect(|h| h.op == op::REQUEST).await;
    let req = got.iter().find(|(h, _)| h.op == op::REQUEST).unwrap().0;
    assert_eq!(req.dst_port, 5000);
    g.op(5000, req.src_port, op::RESPONSE, 0);
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .unwrap()
        .unwrap();
    s.write_all(b"ping").await.unwrap();
    let got = g.expect(|h| h.op == op::RW).await;
    assert!(got.iter().any(|(h, d)| h.op == op::RW && d == b"ping"));
    let h = g.hdr(5000, req.src_port, op::RW);
    g.send(h, b"pong");
    assert_eq!(read_exactly(&mut s, 4).await, b"pong");

    // Nobody listens on 5001 in the guest: RST → connection refused.
    let refused = g.host.connect(5001).unwrap();
    let got = g
        .expect(|h| h.op == op::REQUEST && h.dst_port == 5001)
        .await;
    let req = got
        .iter()
        .find(|(h, _)| h.op == op::REQUEST && h.dst_port == 5001)
        .unwrap()
        .0;
    g.op(5001, req.src_port, op::RST, 0);
    let err = tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_respects_guest_credit_and_answers_credit_requests() {
    let mut g = Guest::new();
    g.buf_alloc = 1000;
    let mut listener = g.host.listen(9).unwrap();
    g.connect_to_host(2222, 9).await;
    let mut s = listener.accept().await.unwrap();
    let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    s.write_all(&payload).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..20 {
        for (h, d) in g.recv() {
            if h.op == op::RW {
                received.extend(d);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(received.len(), 1000, "host exceeded the guest's credit");
    // The guest consumed everything and announces it.
    g.fwd_cnt = 1000;
    g.op(2222, 9, op::CREDIT_UPDATE, 0);
    for _ in 0..20 {
        for (h, d) in g.recv() {
            if h.op == op::RW {
                received.extend(d);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(received.len(), 2000);
    assert_eq!(&received[..], &payload[..2000]);

    // A credit request gets a credit update back.
    g.op(2222, 9, op::CREDIT_REQUEST, 0);
    let got = g.expect(|h| h.op == op::CREDIT_UPDATE).await;
    let cu = got
        .iter()
        .find(|(h, _)| h.op == op::CREDIT_UPDATE)
        .unwrap()
        .0;
    assert_eq!(cu.buf_alloc, BUF_ALLOC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_overrunning_host_credit_is_reset() {
    let mut g = Guest::new();
    let mut listener = g.host.listen(10).unwrap();
    g.connect_to_host(3333, 10).await;
    let mut s = listener.accept().await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..BUF_ALLOC as usize / chunk.len() {
        let h = g.hdr(3333, 10, op::RW);
        g.send(h, &chunk);
    }
    assert_eq!(g.host.connection_count(), 1);
    let h = g.hdr(3333, 10, op::RW);
    g.send(h, b"!");
    g.expect(|h| h.op == op::RST && h.dst_port == 3333).await;
    assert_eq!(g.host.connection_count(), 0);
    // Buffered data is still readable, then the reset shows.
    let mut buf = vec![0u8; BUF_ALLOC as usize];
    s.read_exact(&mut buf).await.unwrap();
    assert!(s.read(&mut buf).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connections_and_dropped_listeners_get_rst() {
    let mut g = Guest::new();
    // Data for a connection that does not exist.
    let h = g.hdr(4444, 77, op::RW);
    g.send(h, b"??");
    g.expect(|h| h.op == op::RST && h.dst_port == 4444).await;
    // REQUEST with no listener.
    g.op(4445, 78, op::REQUEST, 0);
    g.expect(|h| h.op == op::RST && h.dst_port == 4445).await;
    // Wrong socket type.
    let mut h = g.hdr(4446, 78, op::REQUEST);
    h.type_ = 2;
    g.send(h, &[]);
    g.expect(|h| h.op == op::RST && h.dst_port == 4446).await;

    // A listener dropped with an unaccepted connection resets it and frees the port.
    let listener = g.host.listen(78).unwrap();
    g.connect_to_host(4447, 78).await;
    drop(listener);
    g.expect(|h| h.op == op::RST && h.dst_port == 4447).await;
    assert_eq!(g.host.connection_count(), 0);
    g.op(4448, 78, op::REQUEST, 0);
    g.expect(|h| h.op == op::RST && h.dst_port == 4448).await;
    let _again = g.host.listen(78).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let mut g = Guest::new();
    let mut listener = g.host.listen(2000).unwrap();
    const N: u32 = 40;
    for i in 0..N {
        g.connect_to_host(10_000 + i, 2000).await;
    }
    let mut streams = Vec::new();
    for _ in 0..N {
        streams.push(listener.accept().await.unwrap());
    }
    for i in 0..N {
        let h = g.hdr(10_000 + i, 2000, op::RW);
        g.send(h, format!("conn-{i:03}").as_bytes());
    }
    for s in &mut streams {
        let got = read_exactly(s, 8).await;
        assert_eq!(
            got,
            format!("conn-{:03}", s.peer_port() - 10_000).as_bytes()
        );
        s.write_all(&got).await.unwrap();
    }
    let mut echoed = std::collections::HashMap::new();
    for _ in 0..200 {
        for (h, d) in g.recv() {
            if h.op == op::RW {
                echoed.insert(h.dst_port, d);
            }
        }
        if echoed.len() == N as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(echoed.len(), N as usize);
    for (port, d) in echoed {
        assert_eq!(d, format!("conn-{:03}", port - 10_000).as_bytes());
    }
    assert_eq!(g.host.connection_count(), N as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_reset_resets_streams_and_keeps_listeners() {
    let mut g = Guest::new();
    let mut listener = g.host.listen(3000).unwrap();
    g.connect_to_host(5555, 3000).await;
    let mut s = listener.accept().await.unwrap();
    let caps = g.m.probe();
    g.m.set_status(&caps, 0);
    let mut b = [0u8; 1];
    assert!(s.read(&mut b).await.is_err());
    assert_eq!(g.host.connection_count(), 0);
    assert_eq!(g.host.listen(3000).err(), Some(MuxerError::PortInUse(3000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_device_touches_no_ring_until_resume() {
    use uvm_devices::quiesce::Pausable;

    let mut g = Guest::new();
    let mut listener = g.host.listen(1234).unwrap();
    g.connect_to_host(40000, 1234).await;
    let mut s = listener.accept().await.unwrap();
    let mem = g.m.mem();

    g.m.function.lock().pause().unwrap();
    // The guest sends while paused: its tx ring is not consumed and the
    // host reads nothing.
    let tx_used = g.tx.used_idx(&mem);
    let h = g.hdr(40000, 1234, op::RW);
    g.send(h, b"while paused");
    assert_eq!(g.tx.used_idx(&mem), tx_used, "tx processed while paused");
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf))
            .await
            .is_err(),
        "the host read guest data while the device was paused"
    );
    // The host writes while paused: nothing reaches the guest's rx ring,
    // whether the pump or a kick tries.
    let rx_used = g.rx.used_idx(&mem);
    s.write_all(b"to guest").await.unwrap();
    g.kick.kick();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(g.rx.used_idx(&mem), rx_used, "rx written while paused");

    g.m.function.lock().resume().unwrap();
    assert_eq!(read_exactly(&mut s, 12).await, b"while paused");
    assert_ne!(g.tx.used_idx(&mem), tx_used);
    let data = rw_payload(&g.expect(|h| h.op == op::RW).await);
    assert_eq!(data, b"to guest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_connections_leave_nothing_behind() {
    // The guest agent's flood: connect, send 4 KiB, close; the host reads
    // each to the end and drops it. Nothing may stay held afterwards.
    let mut g = Guest::new();
    let mut listener = g.host.listen(7100).unwrap();
    for i in 0..300u32 {
        let src = 20_000 + i;
        g.connect_to_host(src, 7100).await;
        let mut s = listener.accept().await.unwrap();
        let h = g.hdr(src, 7100, op::RW);
        g.send(h, &[0xa5; 4096]);
        g.op(src, 7100, op::SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND);
        g.expect(|h| h.op == op::RST && h.dst_port == src).await;
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 4096);
        drop(s);
    }
    assert_eq!(g.host.connection_count(), 0);
    // The agent can still be reached: a host connect is not refused for a
    // spent budget.
    assert!(
        g.host.connect(9000).is_ok(),
        "the host cannot connect any more"
    );
}
