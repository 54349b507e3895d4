//! Hostile-guest fuzzing: random descriptor chains against the vsock device
//! and random register traffic against the transport. Nothing may panic; a
//! bad chain either completes (dropped or answered with RST) or marks the
//! device DEVICE_NEEDS_RESET, after which a reset brings it back.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod fuzz_rng;
mod virtio_support;

use fuzz_rng::Rng;
use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::vsock::packet::{HDR_SIZE, Header};
use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

struct Rig {
    m: Machine,
    caps: Caps,
    rx: GuestQueue,
    tx: GuestQueue,
    resets: u32,
}

impl Rig {
    fn new() -> Self {
        let host = VsockHost::new(3);
        let dev = VsockDevice::new(3, host.backend(), &tokio::runtime::Handle::current());
        std::mem::forget(host.listen(80)); // a listener the fuzzer can hit
        let m = Machine::new(Box::new(dev));
        let caps = m.probe();
        m.enable_msix(&caps);
        let (rx, tx) = Self::bring_up(&m, &caps);
        Rig {
            m,
            caps,
            rx,
            tx,
            resets: 0,
        }
    }

    fn bring_up(m: &Machine, caps: &Caps) -> (GuestQueue, GuestQueue) {
        assert!(m.negotiate(caps, VIRTIO_F_VERSION_1));
        let rx = m.setup_queue(caps, 0, 16, 1);
        let tx = m.setup_queue(caps, 1, 16, 2);
        m.driver_ok(caps);
        assert_eq!(m.status(caps), 0x0f);
        (rx, tx)
    }

    fn recover_if_broken(&mut self) {
        let s = self.m.status(&self.caps);
        if s & 0x40 != 0 {
            self.m.set_status(&self.caps, 0);
            let (rx, tx) = Self::bring_up(&self.m, &self.caps);
            self.rx = rx;
            self.tx = tx;
            self.resets += 1;
        }
    }
}

fn random_addr(r: &mut Rng) -> u64 {
    match r.below(6) {
        0 => u64::MAX - r.below(4096),
        1 => MEM_SIZE as u64 - r.below(64),
        2 => 0x4000_0000 + r.below(1 << 20),
        _ => 0x80_0000 + r.below(0x40_0000),
    }
}

fn random_len(r: &mut Rng) -> u32 {
    match r.below(7) {
        0 => 0,
        1 => u32::MAX - r.below(16) as u32,
        2 => HDR_SIZE as u32,
        3 => r.below(HDR_SIZE as u64) as u32,
        _ => r.below(8192) as u32,
    }
}

fn random_header(r: &mut Rng) -> Header {
    Header {
        src_cid: if r.chance(85) { 3 } else { r.next() },
        dst_cid: if r.chance(85) { 2 } else { r.next() },
        src_port: 1000 + r.below(8) as u32,
        dst_port: if r.chance(50) {
            80
        } else {
            r.below(100) as u32
        },
        len: if r.chance(70) {
            r.below(64) as u32
        } else {
            r.next() as u32
        },
        type_: if r.chance(90) { 1 } else { r.below(4) as u16 },
        op: r.below(9) as u16,
        flags: r.below(4) as u32,
        buf_alloc: r.next() as u32,
        fwd_cnt: r.next() as u32,
    }
}

/// Writes a raw, possibly hostile, chain of `n` descriptors on `q`.
fn hostile_chain(
    r: &mut Rng,
    mem: &vm_memory::GuestMemoryMmap,
    q: &mut GuestQueue,
    writable: bool,
) {
    let n = 1 + r.below(4) as u16;
    let base = r.below(u64::from(q.size)) as u16;
    for k in 0..n {
        let i = (base + k) % q.size;
        let sane = r.chance(60);
        let (addr, len) = if sane {
            (0x80_0000 + r.below(0x40_0000), 44 + r.below(200) as u32)
        } else {
            (random_addr(r), random_len(r))
        };
        let mut flags: u16 = 0;
        let dir_ok = r.chance(80);
        if writable == dir_ok {
            flags |= 2;
        }
        let mut next = (i + 1) % q.size;
        if k + 1 < n {
            flags |= 1;
        }
        if r.chance(10) {
            flags |= 1; // loop or run past the end
            next = if r.chance(50) {
                i
            } else {
                r.below(1000) as u16
            };
        }
        if r.chance(3) {
            flags |= 4; // indirect, usually garbage
        }
        q.write_desc(mem, i, addr, len, flags, next);
        if k == 0 && !writable && sane && r.chance(90) {
            let h = random_header(r);
            let _ = mem.write_slice(&h.to_bytes(), GuestAddress(addr));
        }
    }
    q.publish(mem, base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_descriptor_chains_never_panic() {
    let mut rig = Rig::new();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut completed = 0u64;
    for iter in 0..4000 {
        let mem = rig.m.mem();
        match r.below(10) {
            0..=5 => {
                hostile_chain(&mut r, &mem, &mut rig.tx, false);
                rig.m.notify(&rig.tx);
            }
            6..=8 => {
                hostile_chain(&mut r, &mem, &mut rig.rx, true);
                rig.m.notify(&rig.rx);
            }
            _ => {
                // Hostile ring indices.
                let q = if r.chance(50) {
                    &mut rig.tx
                } else {
                    &mut rig.rx
                };
                let idx = r.next() as u16;
                q.set_avail_idx(&mem, idx);
                rig.m.notify(q);
            }
        }
        completed += u64::from(rig.tx.used_idx(&mem)) + u64::from(rig.rx.used_idx(&mem));
        rig.recover_if_broken();
        if iter % 500 == 0 {
            // Interleave a well-formed request so the muxer path stays exercised.
            let a = 0x80_0000;
            let h = Header {
                src_cid: 3,
                dst_cid: 2,
                src_port: 7,
                dst_port: 80,
                type_: 1,
                op: 1,
                buf_alloc: 4096,
                ..Header::default()
            };
            mem.write_slice(&h.to_bytes(), GuestAddress(a)).unwrap();
            if rig.tx.add(&mem, &[(a, HDR_SIZE as u32, false)]).is_some() {
                rig.m.notify(&rig.tx);
            }
            rig.recover_if_broken();
        }
    }
    assert!(rig.resets > 0, "the fuzzer never broke the device");
    assert!(completed > 0, "the fuzzer never completed a chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_register_traffic_never_panics() {
    let mut rig = Rig::new();
    let mut r = Rng(0x1234_5678_9abc_def1);
    for _ in 0..4000 {
        let len = [1usize, 2, 4, 8, 3][r.below(5) as usize];
        let v = r.next();
        match r.below(6) {
            0 => {
                let off = r.below(0x40);
                rig.m.write(rig.caps.common + off, len, v);
            }
            1 => {
                let off = r.below(0x8000);
                rig.m.write(off, len, v);
            }
            2 => {
                let off = r.below(0x8000);
                let _ = rig.m.read(off, len);
            }
            3 => {
                // Config space, but leave BAR 0 and the command register alone
                // so the traffic keeps reaching the BAR.
                let off = 0x2c + r.below(0xd0) as u8;
                rig.m.cfg_write(off & !3, 4, v as u32);
                let _ = rig.m.cfg_read(off & !3, 4);
            }
            4 => {
                let q = r.below(5);
                rig.m.write(rig.caps.notify + 4 * q, 2, q);
            }
            _ => rig.recover_if_broken(),
        }
        // Whatever happened, a reset and a clean bring-up must still work.
        if r.chance(2) {
            rig.m.set_status(&rig.caps, 0);
            let (rx, tx) = Rig::bring_up(&rig.m, &rig.caps);
            rig.rx = rx;
            rig.tx = tx;
        }
    }
}
