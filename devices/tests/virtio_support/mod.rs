//! A test-side guest: a PCI machine with one virtio-pci function, probed and
//! driven the way Linux's virtio_pci_modern driver does it, and split
//! virtqueues on vm-memory.
#![allow(dead_code)] // each test crate uses a different part of the helper

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use uvm_devices::bus::Bus;
use uvm_devices::interrupt::{CountingIrq, MsiSink};
use uvm_devices::ioevent::RecordingIoEvents;
use uvm_devices::pci::{PciBarWindow, PciCam, PciRoot, SharedFunction};
use uvm_devices::virtio::pci_transport::VirtioPciDevice;
use uvm_devices::virtio::{GuestMemory, GuestMemoryHandle, VirtioDevice};
use vm_memory::{Bytes, GuestAddress};

pub const WINDOW: u64 = 0xc000_0000;
pub const MEM_SIZE: usize = 16 << 20;
pub const SLOT: u8 = 1;
pub const MSI_ADDR: u64 = 0xfee0_0000;

#[derive(Default)]
pub struct RecordingMsi {
    pub messages: Mutex<Vec<(u64, u32)>>,
}

impl RecordingMsi {
    pub fn take(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.messages.lock())
    }
}

impl MsiSink for RecordingMsi {
    fn signal(&self, address: u64, data: u32) -> std::io::Result<()> {
        self.messages.lock().push((address, data));
        Ok(())
    }
}

pub struct Caps {
    pub common: u64,
    pub notify: u64,
    pub notify_mult: u32,
    pub isr: u64,
    pub device: u64,
    pub msix_cap: u8,
    pub msix_table: u64,
    pub msix_pba: u64,
    pub msix_size: u16,
}

pub struct Machine {
    pub mem: GuestMemoryHandle,
    pub root: Arc<Mutex<PciRoot>>,
    pub pio: Bus,
    pub mmio: Bus,
    pub msi: Arc<RecordingMsi>,
    pub intx: Arc<CountingIrq>,
    pub function: Arc<Mutex<VirtioPciDevice>>,
    pub bar0: u64,
}

/// Saves `old`'s function (pausing it) and restores it into a new machine
/// around `device`, the way a VMM restore builds one: guest memory copied,
/// the state put into a fresh, paused transport, decoding refreshed, then
/// resumed.
pub fn restored(old: &Machine, device: Box<dyn VirtioDevice>) -> Machine {
    use uvm_devices::quiesce::Pausable;
    use uvm_devices::snapshot::Snapshottable;
    old.function.lock().pause().unwrap();
    let state = old.function.lock().save_state().unwrap();
    let m = Machine::new(device);
    let mut ram = vec![0u8; MEM_SIZE];
    old.mem().read_slice(&mut ram, GuestAddress(0)).unwrap();
    m.mem().write_slice(&ram, GuestAddress(0)).unwrap();
    m.function.lock().pause().unwrap();
    m.function.lock().restore_state(&state).unwrap();
    m.root.lock().refresh_decoding();
    m.function.lock().resume().unwrap();
    m
}

/// Polls `done` every 2 ms; fails the test after 10 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

pub fn memory() -> GuestMemoryHandle {
    let m = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    GuestMemoryHandle::new(m)
}

impl Machine {
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        Self::build(device, None)
    }

    /// A machine whose transport serves the queues on a device worker,
    /// with kicks registered in `ioevents`.
    pub fn with_worker(device: Box<dyn VirtioDevice>, ioevents: Arc<RecordingIoEvents>) -> Self {
        Self::build(device, Some(ioevents))
    }

    fn build(device: Box<dyn VirtioDevice>, ioevents: Option<Arc<RecordingIoEvents>>) -> Self {
        let mem = memory();
        let root = Arc::new(Mutex::new(PciRoot::new(
            0x8086,
            0x29c0,
            WINDOW,
            0x1000_0000,
        )));
        let msi = Arc::new(RecordingMsi::default());
        let intx = Arc::new(CountingIrq::default());
        let mut transport =
            VirtioPciDevice::new(device, mem.clone(), msi.clone(), intx.clone()).unwrap();
        if let Some(ioevents) = ioevents {
            transport = transport.with_worker("test-device-worker", ioevents, None);
        }
        let function = Arc::new(Mutex::new(transport));
        let shared: SharedFunction = function.clone();
        root.lock().add_function(Some(SLOT), shared).unwrap();
        let mut pio = Bus::new();
        pio.insert(Arc::new(Mutex::new(PciCam::new(root.clone()))), 0xcf8, 8)
            .unwrap();
        let mut mmio = Bus::new();
        mmio.insert(
            Arc::new(Mutex::new(PciBarWindow::new(root.clone()))),
            WINDOW,
            0x1000_0000,
        )
        .unwrap();
        let mut m = Machine {
            mem,
            root,
            pio,
            mmio,
            msi,
            intx,
            function,
            bar0: 0,
        };
        let lo = m.cfg_read(0x10, 4) as u64;
        let hi = m.cfg_read(0x14, 4) as u64;
        m.bar0 = (hi << 32) | (lo & !0xf);
        m
    }

    pub fn mem(&self) -> GuestMemory {
        use vm_memory::GuestAddressSpace;
        (*self.mem.memory()).clone()
    }

    pub fn cfg_read(&self, off: u8, len: usize) -> u32 {
        let addr = 0x8000_0000u32 | (u32::from(SLOT) << 11) | u32::from(off & 0xfc);
        self.pio.write(0xcf8, &addr.to_le_bytes());
        let mut d = [0u8; 4];
        let port = 0xcfc + u64::from(off & 3);
        self.pio.read(port, &mut d[..len]);
        u32::from_le_bytes(d)
    }

    pub fn cfg_write(&self, off: u8, len: usize, v: u32) {
        let addr = 0x8000_0000u32 | (u32::from(SLOT) << 11) | u32::from(off & 0xfc);
        self.pio.write(0xcf8, &addr.to_le_bytes());
        let port = 0xcfc + u64::from(off & 3);
        self.pio.write(port, &v.to_le_bytes()[..len]);
    }

    pub fn read(&self, off: u64, len: usize) -> u64 {
        let mut d = [0u8; 8];
        self.mmio.read(self.bar0 + off, &mut d[..len]);
        u64::from_le_bytes(d)
    }

    pub fn write(&self, off: u64, len: usize, v: u64) {
        self.mmio.write(self.bar0 + off, &v.to_le_bytes()[..len]);
    }

    /// Walks the capability list like vp_modern_probe.
    pub fn probe(&self) -> Caps {
        // Enable memory decoding and bus mastering first (pci_enable_device).
        let cmd = self.cfg_read(0x04, 2);
        self.cfg_write(0x04, 2, cmd | 0x6);
        assert_eq!(self.cfg_read(0x00, 2), 0x1af4);
        assert!(self.cfg_read(0x06, 2) & 0x10 != 0);
        let mut caps = Caps {
            common: u64::MAX,
            notify: u64::MAX,
            notify_mult: 0,
            isr: u64::MAX,
            device: u64::MAX,
            msix_cap: 0,
            msix_table: 0,
            msix_pba: 0,
            msix_size: 0,
        };
        let mut pos = self.cfg_read(0x34, 1) as u8;
        let mut guard = 0;
        while pos != 0 && guard < 48 {
            guard += 1;
            let id = self.cfg_read(pos, 1) as u8;
            let next = self.cfg_read(pos + 1, 1) as u8;
            if id == 0x09 {
                let cfg_type = self.cfg_read(pos + 3, 1) as u8;
                let bar = self.cfg_read(pos + 4, 1);
                let offset = u64::from(self.cfg_read(pos + 8, 4));
                assert_eq!(bar, 0);
                match cfg_type {
                    1 => caps.common = offset,
                    2 => {
                        caps.notify = offset;
                        caps.notify_mult = self.cfg_read(pos + 16, 4);
                    }
                    3 => caps.isr = offset,
                    4 => caps.device = offset,
                    _ => {}
                }
            } else if id == 0x11 {
                caps.msix_cap = pos;
                caps.msix_size = (self.cfg_read(pos + 2, 2) as u16 & 0x7ff) + 1;
                caps.msix_table = u64::from(self.cfg_read(pos + 4, 4) & !7);
                caps.msix_pba = u64::from(self.cfg_read(pos + 8, 4) & !7);
            }
            pos = next;
        }
        assert!(caps.common != u64::MAX && caps.notify != u64::MAX && caps.isr != u64::MAX);
        caps
    }

    /// Enables MSI-X with vector `v` → data `0x20 + v`, all unmasked.
    pub fn enable_msix(&self, caps: &Caps) {
        for v in 0..u64::from(caps.msix_size) {
            let e = caps.msix_table + 16 * v;
            self.write(e, 4, MSI_ADDR);
            self.write(e + 4, 4, 0);
            self.write(e + 8, 4, 0x20 + v);
            self.write(e + 12, 4, 0);
        }
        let ctrl = self.cfg_read(caps.msix_cap + 2, 2);
        self.cfg_write(caps.msix_cap + 2, 2, ctrl | 0x8000);
    }

    pub fn status(&self, caps: &Caps) -> u8 {
        self.read(caps.common + 0x14, 1) as u8
    }

    pub fn set_status(&self, caps: &Caps, s: u8) {
        self.write(caps.common + 0x14, 1, u64::from(s));
    }

    /// Reset, ACK, DRIVER, negotiate; returns whether FEATURES_OK stuck.
    pub fn negotiate(&self, caps: &Caps, want: u64) -> bool {
        let c = caps.common;
        self.set_status(caps, 0);
        assert_eq!(self.status(caps), 0);
        self.set_status(caps, 1);
        self.set_status(caps, 3);
        self.write(c, 4, 0);
        let lo = self.read(c + 4, 4);
        self.write(c, 4, 1);
        let hi = self.read(c + 4, 4);
        let offered = lo | (hi << 32);
        let f = offered & want;
        self.write(c + 8, 4, 0);
        self.write(c + 0xc, 4, f & 0xffff_ffff);
        self.write(c + 8, 4, 1);
        self.write(c + 0xc, 4, f >> 32);
        self.set_status(caps, 3 | 8);
        self.status(caps) & 8 != 0
    }

    /// Sets up queue `q` at its fixed spot in memory with MSI-X vector `vector`.
    pub fn setup_queue(&self, caps: &Caps, q: u16, size: u16, vector: u16) -> GuestQueue {
        let c = caps.common;
        self.write(c + 0x16, 2, u64::from(q));
        let max = self.read(c + 0x18, 2) as u16;
        assert!(max >= size);
        self.write(c + 0x18, 2, u64::from(size));
        self.write(c + 0x1a, 2, u64::from(vector));
        assert_eq!(self.read(c + 0x1a, 2) as u16, vector);
        let off = self.read(c + 0x1e, 2);
        let base = 0x10000 + u64::from(q) * 0x4000;
        let desc = base;
        let avail = base + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        for (reg, a) in [(0x20, desc), (0x28, avail), (0x30, used)] {
            self.write(c + reg, 4, a & 0xffff_ffff);
            self.write(c + reg + 4, 4, a >> 32);
        }
        self.write(c + 0x1c, 2, 1);
        GuestQueue {
            index: q,
            size,
            desc,
            avail,
            used,
            notify: caps.notify + off * u64::from(caps.notify_mult),
            free: (0..size).rev().collect(),
            chains: HashMap::new(),
            avail_idx: 0,
            last_used: 0,
            next_buf: 0x10_0000 + u64::from(q) * 0x20_0000,
            buf_end: 0x10_0000 + (u64::from(q) + 1) * 0x20_0000,
        }
    }

    pub fn driver_ok(&self, caps: &Caps) {
        self.set_status(caps, 1 | 2 | 8 | 4);
    }

    pub fn notify(&self, q: &GuestQueue) {
        self.write(q.notify, 2, u64::from(q.index));
    }
}

/// A used entry: head, written length, and the chain's `(addr, len)` buffers.
pub type UsedChain = (u16, u32, Vec<(u64, u32)>);

/// The driver side of a split virtqueue.
pub struct GuestQueue {
    pub index: u16,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub notify: u64,
    free: Vec<u16>,
    chains: HashMap<u16, Vec<(u16, u64, u32)>>,
    avail_idx: u16,
    last_used: u16,
    next_buf: u64,
    buf_end: u64,
}

impl GuestQueue {
    /// A buffer address in this queue's private area (a simple ring allocator).
    pub fn alloc(&mut self, len: u32) -> u64 {
        let len = u64::from(len.max(1) + 7) & !7;
        if self.next_buf + len > self.buf_end {
            self.next_buf = self.buf_end - 0x20_0000;
        }
        let a = self.next_buf;
        self.next_buf += len;
        a
    }

    /// Raw descriptor write.
    pub fn write_desc(
        &self,
        mem: &GuestMemory,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let d = self.desc + 16 * u64::from(i);
        mem.write_obj(addr, GuestAddress(d)).unwrap();
        mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
        mem.write_obj(next, GuestAddress(d + 14)).unwrap();
    }

    /// Publishes head `head` in the avail ring.
    pub fn publish(&mut self, mem: &GuestMemory, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Forces the avail index (hostile tests).
    pub fn set_avail_idx(&mut self, mem: &GuestMemory, idx: u16) {
        self.avail_idx = idx;
        mem.write_obj(idx, GuestAddress(self.avail + 2)).unwrap();
    }

    /// Adds a chain of `(addr, len, device_writable)` buffers; returns the head.
    pub fn add(&mut self, mem: &GuestMemory, bufs: &[(u64, u32, bool)]) -> Option<u16> {
        if self.free.len() < bufs.len() || bufs.is_empty() {
            return None;
        }
        let ids: Vec<u16> = (0..bufs.len()).map(|_| self.free.pop().unwrap()).collect();
        for (k, (addr, len, w)) in bufs.iter().enumerate() {
            let mut flags = if *w { 2 } else { 0 };
            let next = if k + 1 < ids.len() {
                flags |= 1;
                ids[k + 1]
            } else {
                0
            };
            self.write_desc(mem, ids[k], *addr, *len, flags, next);
        }
        let chain = ids
            .iter()
            .zip(bufs)
            .map(|(i, (a, l, _))| (*i, *a, *l))
            .collect();
        self.chains.insert(ids[0], chain);
        self.publish(mem, ids[0]);
        Some(ids[0])
    }

    /// Used entries since last call: (head, written length, buffers of the chain).
    pub fn take_used(&mut self, mem: &GuestMemory) -> Vec<UsedChain> {
        let idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).unwrap();
        let mut out = Vec::new();
        while self.last_used != idx {
            let e = self.used + 4 + 8 * u64::from(self.last_used % self.size);
            let id: u32 = mem.read_obj(GuestAddress(e)).unwrap();
            let len: u32 = mem.read_obj(GuestAddress(e + 4)).unwrap();
            self.last_used = self.last_used.wrapping_add(1);
            let chain = self.chains.remove(&(id as u16)).unwrap_or_default();
            for (i, _, _) in &chain {
                self.free.push(*i);
            }
            out.push((
                id as u16,
                len,
                chain.into_iter().map(|(_, a, l)| (a, l)).collect(),
            ));
        }
        out
    }

    pub fn used_idx(&self, mem: &GuestMemory) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }
}
