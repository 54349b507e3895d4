//! Hostile-guest fuzzing of the virtio-scsi, virtio-pmem and virtio-net
//! device models: random and malformed descriptor chains (loops,
//! out-of-range addresses, zero and huge lengths, wrong directions,
//! truncated headers, garbage indirect tables) and random CDBs. Nothing may
//! panic; every request either completes or marks the device
//! DEVICE_NEEDS_RESET, after which a reset brings it back.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod fuzz_rng;
mod virtio_support;

use fuzz_rng::Rng;
use uvm_devices::scsi::{DiskImage, ImageKind, ScsiLun};
use uvm_devices::virtio::net::{MemoryBackend, NetDevice, VIRTIO_NET_F_MAC};
use uvm_devices::virtio::pmem::PmemDevice;
use uvm_devices::virtio::scsi::{ScsiHost, VIRTIO_SCSI_F_HOTPLUG, VirtioScsiDevice};
use uvm_devices::virtio::{VIRTIO_F_VERSION_1, VirtioDevice};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

const SANE: u64 = 0x80_0000;

fn random_addr(r: &mut Rng) -> u64 {
    match r.below(6) {
        0 => u64::MAX - r.below(4096),
        1 => MEM_SIZE as u64 - r.below(64),
        2 => 0x4000_0000 + r.below(1 << 20),
        _ => SANE + r.below(0x40_0000),
    }
}

fn random_len(r: &mut Rng) -> u32 {
    match r.below(6) {
        0 => 0,
        1 => u32::MAX - r.below(16) as u32,
        2 => r.below(16) as u32,
        _ => r.below(8192) as u32,
    }
}

/// Writes a raw, possibly hostile chain on `q` and publishes it; `header`
/// goes into the first buffer when it is a sane one.
fn hostile_chain(r: &mut Rng, mem: &vm_memory::GuestMemoryMmap, q: &mut GuestQueue, header: &[u8]) {
    let n = 1 + r.below(4) as u16;
    let base = r.below(u64::from(q.size)) as u16;
    for k in 0..n {
        let i = (base + k) % q.size;
        let sane = r.chance(60);
        let (addr, len) = if sane {
            (SANE + r.below(0x40_0000), r.below(300) as u32)
        } else {
            (random_addr(r), random_len(r))
        };
        // Mostly readable first, writable after; sometimes the wrong way.
        let mut flags: u16 = if (k > 0) != r.chance(15) { 2 } else { 0 };
        let mut next = (i + 1) % q.size;
        if k + 1 < n {
            flags |= 1;
        }
        if r.chance(10) {
            flags |= 1;
            next = if r.chance(50) {
                i
            } else {
                r.below(1000) as u16
            };
        }
        if r.chance(3) {
            flags |= 4;
        }
        q.write_desc(mem, i, addr, len, flags, next);
        if k == 0 && sane && !header.is_empty() {
            let _ = mem.write_slice(header, GuestAddress(addr));
        }
    }
    q.publish(mem, base);
}

/// A machine with one device whose queues the fuzzer drives.
struct Rig {
    m: Machine,
    caps: Caps,
    features: u64,
    sizes: Vec<u16>,
    queues: Vec<GuestQueue>,
    resets: u32,
}

impl Rig {
    fn new(dev: Box<dyn VirtioDevice>, features: u64, sizes: Vec<u16>) -> Self {
        let m = Machine::new(dev);
        let caps = m.probe();
        m.enable_msix(&caps);
        let mut rig = Rig {
            m,
            caps,
            features,
            sizes,
            queues: Vec::new(),
            resets: 0,
        };
        rig.bring_up();
        rig
    }

    fn bring_up(&mut self) {
        assert!(self.m.negotiate(&self.caps, self.features));
        // Fresh, zeroed rings like a re-probing driver allocates (the
        // helper puts queue q's rings at 0x10000 + q * 0x4000).
        let mem = self.m.mem();
        for q in 0..self.sizes.len() as u64 {
            mem.write_slice(&[0u8; 0x4000], GuestAddress(0x10000 + q * 0x4000))
                .unwrap();
        }
        self.queues = self
            .sizes
            .iter()
            .enumerate()
            .map(|(i, s)| self.m.setup_queue(&self.caps, i as u16, *s, i as u16 + 1))
            .collect();
        self.m.driver_ok(&self.caps);
        assert_eq!(self.m.status(&self.caps), 0x0f);
    }

    fn broken(&self) -> bool {
        self.m.status(&self.caps) & 0x40 != 0
    }

    fn recover_if_broken(&mut self) -> bool {
        if self.broken() {
            self.m.set_status(&self.caps, 0);
            self.bring_up();
            self.resets += 1;
            return true;
        }
        false
    }

    /// One hostile step on a random queue.
    fn hostile_step(&mut self, r: &mut Rng, header: impl Fn(&mut Rng, usize) -> Vec<u8>) {
        let mem = self.m.mem();
        let qi = r.below(self.queues.len() as u64) as usize;
        if r.chance(8) {
            let idx = r.next() as u16;
            self.queues[qi].set_avail_idx(&mem, idx);
        } else {
            let h = header(r, qi);
            hostile_chain(r, &mem, &mut self.queues[qi], &h);
        }
        let q = &self.queues[qi];
        self.m.notify(q);
        if r.chance(1) {
            // Notify a queue that does not exist.
            self.m.write(self.caps.notify + 4 * 9, 2, 9);
        }
        self.recover_if_broken();
    }
}

fn scsi_header(r: &mut Rng) -> Vec<u8> {
    let mut h = vec![0u8; 51];
    h[0] = if r.chance(90) { 1 } else { r.next() as u8 };
    h[1] = if r.chance(90) { 0 } else { r.next() as u8 };
    h[2] = if r.chance(80) { 0x40 } else { r.next() as u8 };
    h[3] = r.below(70) as u8;
    h[19..51].copy_from_slice(&random_cdb(r));
    h
}

const KNOWN: [u8; 17] = [
    0x00, 0x03, 0x08, 0x0a, 0x12, 0x1a, 0x1b, 0x25, 0x28, 0x2a, 0x35, 0x5a, 0x88, 0x8a, 0x91, 0x9e,
    0xa0,
];

fn random_cdb(r: &mut Rng) -> [u8; 32] {
    let mut c = [0u8; 32];
    let len = r.below(33) as usize;
    for b in c.iter_mut().take(len) {
        *b = r.next() as u8;
    }
    if r.chance(75) {
        c[0] = KNOWN[r.below(KNOWN.len() as u64) as usize];
    }
    if r.chance(70) {
        // Small LBAs and lengths so many commands succeed.
        c[2..6].fill(0);
        c[7] = 0;
        c[10..13].fill(0);
    }
    c
}

fn disk(f: &tempfile::NamedTempFile, ro: bool) -> ScsiLun {
    ScsiLun::new(
        DiskImage::open(f.path(), ImageKind::Raw, ro).unwrap(),
        "fuzz",
    )
}

#[test]
fn virtio_scsi_survives_hostile_chains_and_random_cdbs() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(1 << 20).unwrap();
    let dev = VirtioScsiDevice::new(1);
    let host: ScsiHost = dev.host();
    host.add_lun(0, disk(&f, false)).unwrap();
    host.add_lun(1, disk(&f, true)).unwrap();
    let mut rig = Rig::new(
        Box::new(dev),
        VIRTIO_F_VERSION_1 | VIRTIO_SCSI_F_HOTPLUG,
        vec![16, 16, 32],
    );
    let mut r = Rng(0x5c51_f00d_1234_5678);
    let (mut structured, mut completed_ok, mut check) = (0u32, 0u32, 0u32);
    for iter in 0..5000 {
        let mem = rig.m.mem();
        match r.below(10) {
            0..=3 => rig.hostile_step(&mut r, |r, qi| match qi {
                0 => (0..r.below(30)).map(|_| r.below(8) as u8).collect(),
                2 => scsi_header(r),
                _ => Vec::new(),
            }),
            4..=8 => {
                // A well-formed chain around a random request: must complete.
                let hdr = scsi_header(&mut r);
                let out_len = [0u32, 0, 512, 1024, 7, 4096][r.below(6) as usize];
                let in_len = [0u32, 36, 512, 4096, 3, 255][r.below(6) as usize];
                let resp_len = if r.chance(95) {
                    108
                } else {
                    r.below(108) as u32
                };
                let q = &mut rig.queues[2];
                let h = q.alloc(51);
                mem.write_slice(&hdr, GuestAddress(h)).unwrap();
                let mut bufs = vec![(h, 51, false)];
                if out_len > 0 {
                    bufs.push((q.alloc(out_len), out_len, false));
                }
                let resp = q.alloc(108);
                bufs.push((resp, resp_len, true));
                if in_len > 0 {
                    bufs.push((q.alloc(in_len), in_len, true));
                }
                let before = q.used_idx(&mem);
                if q.add(&mem, &bufs).is_some() {
                    rig.m.notify(&rig.queues[2]);
                    structured += 1;
                    let after = rig.queues[2].used_idx(&mem);
                    assert!(
                        after != before || rig.broken(),
                        "iter {iter}: request neither completed nor broke the device: status {:#x} idx {before} bufs {bufs:x?}",
                        rig.m.status(&rig.caps)
                    );
                    if after != before && resp_len >= 108 {
                        let response: u8 = mem.read_obj(GuestAddress(resp + 11)).unwrap();
                        let status: u8 = mem.read_obj(GuestAddress(resp + 10)).unwrap();
                        assert!(response <= 12, "response {response}");
                        match (response, status) {
                            (0, 0) => completed_ok += 1,
                            (0, 2) => check += 1,
                            (0, s) => panic!("status {s:#x}"),
                            _ => {}
                        }
                    }
                    rig.queues[2].take_used(&mem);
                }
                rig.recover_if_broken();
            }
            _ => {
                // Hotplug churn while the guest misbehaves.
                let lun = 2 + r.below(6) as u16;
                if r.chance(50) {
                    let _ = host.add_lun(lun, disk(&f, r.chance(50)));
                } else {
                    let _ = host.remove_lun(lun);
                }
                if r.chance(30) {
                    let q = &mut rig.queues[1];
                    let a = q.alloc(16);
                    let len = if r.chance(80) { 16 } else { r.below(16) as u32 };
                    if q.add(&mem, &[(a, len, true)]).is_some() {
                        rig.m.notify(&rig.queues[1]);
                    }
                    rig.recover_if_broken();
                }
            }
        }
        if iter % 1000 == 999 {
            rig.m.set_status(&rig.caps, 0);
            rig.bring_up();
        }
    }
    assert!(rig.resets > 0, "the fuzzer never broke the device");
    assert!(
        structured > 1000 && completed_ok > 100 && check > 100,
        "structured {structured} ok {completed_ok} check {check}"
    );
    // A clean request still works at the end.
    rig.recover_if_broken();
    let mem = rig.m.mem();
    let mut hdr = vec![0u8; 51];
    hdr[..4].copy_from_slice(&[1, 0, 0x40, 0]);
    let q = &mut rig.queues[2];
    let h = q.alloc(51);
    mem.write_slice(&hdr, GuestAddress(h)).unwrap();
    let resp = q.alloc(108);
    q.add(&mem, &[(h, 51, false), (resp, 108, true)]).unwrap();
    rig.m.notify(&rig.queues[2]);
    assert_eq!(mem.read_obj::<u16>(GuestAddress(resp + 10)).unwrap(), 0);
}

#[test]
fn virtio_pmem_survives_hostile_chains() {
    let f = tempfile::tempfile().unwrap();
    let dev = PmemDevice::new(f, false, 0x1_0000_0000, 1 << 20);
    let mut rig = Rig::new(Box::new(dev), VIRTIO_F_VERSION_1, vec![16]);
    let mut r = Rng(0x0dd_ba11_5eed);
    for _ in 0..3000 {
        rig.hostile_step(&mut r, |r, _| {
            (0..r.below(8))
                .map(|_| if r.chance(70) { 0 } else { r.next() as u8 })
                .collect()
        });
    }
    assert!(rig.resets > 0);
    let mem = rig.m.mem();
    let q = &mut rig.queues[0];
    let a = q.alloc(4);
    mem.write_obj(0u32, GuestAddress(a)).unwrap();
    let resp = q.alloc(4);
    mem.write_obj(7u32, GuestAddress(resp)).unwrap();
    q.add(&mem, &[(a, 4, false), (resp, 4, true)]).unwrap();
    rig.m.notify(&rig.queues[0]);
    assert_eq!(mem.read_obj::<u32>(GuestAddress(resp)).unwrap(), 0);
}

#[test]
fn virtio_net_survives_hostile_chains() {
    let backend = MemoryBackend::new();
    let dev = NetDevice::new(Box::new(backend.clone()), [2, 0, 0, 0, 0, 1]);
    let host = dev.host();
    let mut rig = Rig::new(
        Box::new(dev),
        VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC,
        vec![16, 16],
    );
    let mut r = Rng(0x7e7_c0ffee);
    for i in 0..3000 {
        if r.chance(30) {
            let len = [0usize, 1, 14, 60, 1514, 70000][r.below(6) as usize];
            backend.push_to_guest(&vec![i as u8; len]);
            let _ = host.process_rx();
        }
        rig.hostile_step(&mut r, |_, _| Vec::new());
        backend.take_sent();
    }
    assert!(rig.resets > 0);
}
