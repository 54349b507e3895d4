//! The vsock device behind a transport with a device worker (the way the
//! kvm backend runs it): queue work on the worker thread, host data from
//! the device's pump task, and the test playing the guest driver. A long
//! request/response exchange must never stall.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_devices::ioevent::RecordingIoEvents;
use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::vsock::packet::{HDR_SIZE, Header, op};
use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

const GUEST_CID: u64 = 3;
const PORT: u32 = 5000;
const SRC: u32 = 40_000;

struct Driver {
    m: Machine,
    rx: GuestQueue,
    tx: GuestQueue,
    fwd_cnt: u32,
}

impl Driver {
    fn header(&self, op: u16, len: u32) -> Header {
        Header {
            src_cid: GUEST_CID,
            dst_cid: 2,
            src_port: SRC,
            dst_port: PORT,
            type_: 1,
            op,
            len,
            buf_alloc: 1 << 20,
            fwd_cnt: self.fwd_cnt,
            ..Header::default()
        }
    }

    /// Sends one packet; waits until the worker has used the chain.
    fn send(&mut self, op: u16, payload: &[u8]) {
        let mem = self.m.mem();
        // Reclaim what the worker used so far.
        self.tx.take_used(&mem);
        let h = self.header(op, payload.len() as u32);
        let a = self.tx.alloc(HDR_SIZE as u32);
        mem.write_slice(&h.to_bytes(), GuestAddress(a)).unwrap();
        let mut bufs = vec![(a, HDR_SIZE as u32, false)];
        if !payload.is_empty() {
            let p = self.tx.alloc(payload.len() as u32);
            mem.write_slice(payload, GuestAddress(p)).unwrap();
            bufs.push((p, payload.len() as u32, false));
        }
        let mut tries = 0;
        while self.tx.add(&mem, &bufs).is_none() {
            tries += 1;
            assert!(tries < 5000, "tx ring never drained");
            std::thread::sleep(Duration::from_millis(1));
            self.tx.take_used(&mem);
        }
        self.m.notify(&self.tx);
    }

    /// Packets delivered so far; their buffers go back to the ring.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mem = self.m.mem();
        let mut out = Vec::new();
        for (_, len, bufs) in self.rx.take_used(&mem) {
            let (addr, cap) = bufs[0];
            let mut raw = [0u8; HDR_SIZE];
            mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
            let h = Header::from_bytes(&raw);
            assert_eq!(h.len as usize + HDR_SIZE, len as usize);
            let mut data = vec![0u8; h.len as usize];
            mem.read_slice(&mut data, GuestAddress(addr + HDR_SIZE as u64))
                .unwrap();
            if h.op == op::RW {
                self.fwd_cnt = self.fwd_cnt.wrapping_add(h.len);
            }
            out.push((h, data));
            self.rx.add(&mem, &[(addr, cap, true)]).unwrap();
        }
        if !out.is_empty() {
            self.m.notify(&self.rx);
        }
        out
    }

    /// Waits up to 5 s for `n` payload bytes on the connection.
    fn read_payload(&mut self, n: usize) -> Vec<u8> {
        let start = Instant::now();
        let mut got = Vec::new();
        while got.len() < n {
            for (h, data) in self.recv() {
                match h.op {
                    op::RW => got.extend(data),
                    op::RST => panic!("connection reset after {:?}", start.elapsed()),
                    _ => {}
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "stalled: {} of {n} bytes after 5 s",
                got.len()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_response_exchange_never_stalls() {
    let host = VsockHost::new(GUEST_CID);
    let mut listener = host.listen(PORT).unwrap();
    let dev = VsockDevice::new(
        GUEST_CID,
        host.backend(),
        &tokio::runtime::Handle::current(),
    );
    let ioevents = Arc::new(RecordingIoEvents::default());
    let m = Machine::with_worker(Box::new(dev), ioevents);
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 256, 1);
    let tx = m.setup_queue(&caps, 1, 256, 2);
    let _ev = m.setup_queue(&caps, 2, 256, 3);
    m.driver_ok(&caps);
    let mem = m.mem();
    for _ in 0..32 {
        let a = rx.alloc(4096 + HDR_SIZE as u32);
        rx.add(&mem, &[(a, 4096 + HDR_SIZE as u32, true)]).unwrap();
    }
    m.notify(&rx);
    // The host echoes every request back.
    tokio::spawn(async move {
        let mut s = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let rounds = tokio::task::spawn_blocking(move || {
        let mut d = Driver {
            m,
            rx,
            tx,
            fwd_cnt: 0,
        };
        d.send(op::REQUEST, &[]);
        let start = Instant::now();
        loop {
            if d.recv().iter().any(|(h, _)| h.op == op::RESPONSE) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no RESPONSE");
            std::thread::sleep(Duration::from_millis(1));
        }
        for round in 0..1000u32 {
            let len = 1 + (round as usize * 37) % 900;
            let request: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            d.send(op::RW, &request);
            let reply = d.read_payload(len);
            assert_eq!(reply, request, "round {round}");
        }
        1000
    })
    .await
    .unwrap();
    assert_eq!(rounds, 1000);
}
