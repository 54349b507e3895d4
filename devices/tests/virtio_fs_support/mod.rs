//! Shared pieces of the virtio-fs tests: a virtiofsd fixture, memfd-backed
//! guest memory, a recording interrupt sink, driver-side split rings, and
//! a hand-built FUSE_INIT exchange.
#![allow(dead_code)] // each test crate uses a different part of the helper

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use uvm_devices::virtio::fs::{VhostUserFs, VirtiofsdProcess, find_virtiofsd};
use uvm_devices::virtio::queue::build_queue;
use uvm_devices::virtio::{ActivateContext, GuestMemory, GuestMemoryHandle, VirtioInterrupt};
use virtio_queue::Queue;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use vm_memory::{Address, Bytes, FileOffset, GuestAddress};

pub const SKIP: &str = "SKIPPED: virtiofsd not installed (cargo install virtiofsd --locked)";
pub const MEM_SIZE: usize = 4 << 20;
pub const QUEUE_SIZE: u16 = 16;
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const FUSE_INIT: u32 = 26;
pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;

/// What the device reported through its interrupt handle.
#[derive(Default)]
pub struct Recorded {
    pub queue_signals: Vec<u16>,
    pub config_signals: usize,
    pub needs_reset: Vec<String>,
}

/// A [`VirtioInterrupt`] that records and wakes waiters.
#[derive(Default)]
pub struct RecordingInterrupt {
    state: Mutex<Recorded>,
    changed: Condvar,
}

impl RecordingInterrupt {
    /// Waits (bounded) until `pred` holds; returns whether it did.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Recorded) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        while !pred(&st) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap().0;
        }
        true
    }

    pub fn signals_of(&self, queue: u16) -> usize {
        let st = self.state.lock().unwrap();
        st.queue_signals.iter().filter(|q| **q == queue).count()
    }

    pub fn needs_reset(&self) -> Vec<String> {
        self.state.lock().unwrap().needs_reset.clone()
    }
}

impl VirtioInterrupt for RecordingInterrupt {
    fn signal_queue(&self, queue: u16) {
        self.state.lock().unwrap().queue_signals.push(queue);
        self.changed.notify_all();
    }

    fn signal_config(&self) {
        self.state.lock().unwrap().config_signals += 1;
        self.changed.notify_all();
    }

    fn set_needs_reset(&self, reason: &str) {
        self.state
            .lock()
            .unwrap()
            .needs_reset
            .push(reason.to_owned());
        self.changed.notify_all();
    }
}

/// Guest memory in one memfd, mapped shared (what vhost-user needs).
pub fn memfd_memory(size: usize) -> GuestMemory {
    // SAFETY: memfd_create with a NUL-terminated name; the result is
    // checked before it is used.
    let fd = unsafe { libc::memfd_create(c"uvm-test-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just created and nothing else owns it.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(size as u64).unwrap();
    GuestMemory::from_ranges_with_files([(GuestAddress(0), size, Some(FileOffset::new(file, 0)))])
        .unwrap()
}

/// Anonymous guest memory (what vhost-user cannot use).
pub fn anonymous_memory(size: usize) -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), size)]).unwrap()
}

/// A temporary share served by a virtiofsd.
pub struct Share {
    pub dir: tempfile::TempDir,
    pub daemon: VirtiofsdProcess,
}

impl Share {
    /// Starts virtiofsd on a fresh directory, or `None` if it is not installed.
    pub fn start() -> Option<Share> {
        let Some(binary) = find_virtiofsd() else {
            println!("{SKIP}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("hello.txt"), b"hello from the host\n").unwrap();
        let socket = dir.path().join("virtiofsd.sock");
        let daemon = VirtiofsdProcess::spawn(&binary, &shared, &socket, false).unwrap();
        Some(Share { dir, daemon })
    }

    pub fn socket(&self) -> PathBuf {
        self.daemon.socket_path().to_path_buf()
    }

    pub fn connect(&self) -> VhostUserFs {
        VhostUserFs::connect(&self.socket(), "myfs", 1, 256).unwrap()
    }
}

/// The driver side of one split virtqueue in guest memory: descriptor
/// table at `base`, available ring after it, used ring 4-aligned after that
/// (virtio 1.2 section 2.7). virtio-queue's `MockSplitQueue` is not used for
/// the layout: in 0.18 it places the used ring `len` bytes (not entries)
/// after the start of the available ring, so the rings overlap and the
/// backend's used entries overwrite `used_event`.
pub struct Ring {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl Ring {
    pub fn new(mem: &GuestMemory, base: u64, size: u16) -> Self {
        let n = u64::from(size);
        let desc = base;
        let avail = desc + 16 * n;
        let used = (avail + 6 + 2 * n + 3) & !3;
        let end = used + 6 + 8 * n;
        mem.write_slice(&vec![0u8; (end - base) as usize], GuestAddress(base))
            .unwrap();
        Ring {
            size,
            desc,
            avail,
            used,
        }
    }

    /// The device-side queue, as the transport builds it at DRIVER_OK.
    pub fn queue(&self, mem: &GuestMemory) -> Queue {
        build_queue(256, self.size, self.desc, self.avail, self.used, mem).unwrap()
    }

    /// Writes `descs` (addr, len, device-writable) as descriptors 0.. and
    /// publishes descriptor 0 as the next available chain.
    pub fn add_chain(&self, mem: &GuestMemory, descs: &[(u64, u32, bool)]) {
        for (i, (addr, len, writable)) in descs.iter().enumerate() {
            let last = i + 1 == descs.len();
            let mut flags = if *writable { VRING_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VRING_DESC_F_NEXT;
            }
            let next = if last { 0 } else { i as u16 + 1 };
            let d = RawDescriptor::from(SplitDescriptor::new(*addr, *len, flags, next));
            mem.write_obj(d, GuestAddress(self.desc + 16 * i as u64))
                .unwrap();
        }
        let idx: u16 = mem.read_obj(GuestAddress(self.avail + 2)).unwrap();
        let slot = self.avail + 4 + 2 * u64::from(idx % self.size);
        mem.write_obj(0u16, GuestAddress(slot)).unwrap();
        fence(Ordering::SeqCst);
        mem.write_obj(idx.wrapping_add(1), GuestAddress(self.avail + 2))
            .unwrap();
        fence(Ordering::SeqCst);
    }

    pub fn used_idx(&self, mem: &GuestMemory) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// (id, len) of used element `i`.
    pub fn used_elem(&self, mem: &GuestMemory, i: u16) -> (u32, u32) {
        let e = self.used + 4 + 8 * u64::from(i % self.size);
        (
            mem.read_obj(GuestAddress(e)).unwrap(),
            mem.read_obj(GuestAddress(e + 4)).unwrap(),
        )
    }

    /// Writes `used_event` (VIRTIO_RING_F_EVENT_IDX): interrupt once the
    /// used index passes `value`.
    pub fn set_used_event(&self, mem: &GuestMemory, value: u16) {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        mem.write_obj(value, GuestAddress(at)).unwrap();
    }
}

/// The hiprio queue and one request queue, at `base` and `base + 0x1000`.
pub struct Rings {
    pub hiprio: Ring,
    pub request: Ring,
}

impl Rings {
    pub fn new(mem: &GuestMemory, base: u64) -> Self {
        Rings {
            hiprio: Ring::new(mem, base, QUEUE_SIZE),
            request: Ring::new(mem, base + 0x1000, QUEUE_SIZE),
        }
    }

    pub fn queues(&self, mem: &GuestMemory) -> Vec<Option<Queue>> {
        vec![Some(self.hiprio.queue(mem)), Some(self.request.queue(mem))]
    }

    pub fn used_idx(&self, mem: &GuestMemory) -> u16 {
        self.request.used_idx(mem)
    }

    pub fn used_elem(&self, mem: &GuestMemory, i: u16) -> (u32, u32) {
        self.request.used_elem(mem, i)
    }
}

pub fn context(
    mem: &GuestMemory,
    queues: Vec<Option<Queue>>,
    interrupt: &Arc<RecordingInterrupt>,
) -> ActivateContext {
    ActivateContext {
        mem: GuestMemoryHandle::new(mem.clone()),
        queues,
        features: 1 << 32, // VIRTIO_F_VERSION_1
        interrupt: interrupt.clone(),
    }
}

/// Guest addresses of one FUSE_INIT exchange.
pub struct InitBuffers {
    pub in_header: u64,
    pub init_in: u64,
    pub out_header: u64,
    pub init_out: u64,
}

impl InitBuffers {
    pub fn at(base: u64) -> Self {
        InitBuffers {
            in_header: base,
            init_in: base + 0x100,
            out_header: base + 0x200,
            init_out: base + 0x300,
        }
    }
}

pub const IN_HEADER_LEN: u32 = 40;
pub const INIT_IN_LEN: u32 = 64;
pub const OUT_HEADER_LEN: u32 = 16;
pub const INIT_OUT_LEN: u32 = 64;

/// Writes a FUSE_INIT request with `unique` and queues it as descriptors
/// 0..4 (two readable, two writable) on the request queue.
pub fn queue_fuse_init(mem: &GuestMemory, rings: &Rings, bufs: &InitBuffers, unique: u64) {
    // struct fuse_in_header
    let mut hdr = Vec::with_capacity(IN_HEADER_LEN as usize);
    hdr.extend_from_slice(&(IN_HEADER_LEN + INIT_IN_LEN).to_le_bytes()); // len
    hdr.extend_from_slice(&FUSE_INIT.to_le_bytes()); // opcode
    hdr.extend_from_slice(&unique.to_le_bytes()); // unique
    hdr.extend_from_slice(&0u64.to_le_bytes()); // nodeid
    hdr.extend_from_slice(&0u32.to_le_bytes()); // uid
    hdr.extend_from_slice(&0u32.to_le_bytes()); // gid
    hdr.extend_from_slice(&0u32.to_le_bytes()); // pid
    hdr.extend_from_slice(&0u16.to_le_bytes()); // total_extlen
    hdr.extend_from_slice(&0u16.to_le_bytes()); // padding
    assert_eq!(hdr.len(), IN_HEADER_LEN as usize);
    // struct fuse_init_in: major, minor, max_readahead, flags, flags2, unused[11]
    let mut init = vec![0u8; INIT_IN_LEN as usize];
    init[0..4].copy_from_slice(&7u32.to_le_bytes());
    init[4..8].copy_from_slice(&31u32.to_le_bytes());
    init[8..12].copy_from_slice(&0x2_0000u32.to_le_bytes());
    mem.write_slice(&hdr, GuestAddress(bufs.in_header)).unwrap();
    mem.write_slice(&init, GuestAddress(bufs.init_in)).unwrap();
    // Poison the reply areas so a missing write shows.
    mem.write_slice(
        &[0xaa; OUT_HEADER_LEN as usize],
        GuestAddress(bufs.out_header),
    )
    .unwrap();
    mem.write_slice(&[0xaa; INIT_OUT_LEN as usize], GuestAddress(bufs.init_out))
        .unwrap();
    rings.request.add_chain(
        mem,
        &[
            (bufs.in_header, IN_HEADER_LEN, false),
            (bufs.init_in, INIT_IN_LEN, false),
            (bufs.out_header, OUT_HEADER_LEN, true),
            (bufs.init_out, INIT_OUT_LEN, true),
        ],
    );
}

/// The reply: (fuse_out_header.len, .error, .unique, fuse_init_out.major, .minor).
pub fn read_init_reply(mem: &GuestMemory, bufs: &InitBuffers) -> (u32, i32, u64, u32, u32) {
    let a = GuestAddress(bufs.out_header);
    (
        mem.read_obj(a).unwrap(),
        mem.read_obj(a.unchecked_add(4)).unwrap(),
        mem.read_obj(a.unchecked_add(8)).unwrap(),
        mem.read_obj(GuestAddress(bufs.init_out)).unwrap(),
        mem.read_obj(GuestAddress(bufs.init_out + 4)).unwrap(),
    )
}

/// Waits (bounded) until the request queue's used index reaches `idx`.
pub fn wait_used(mem: &GuestMemory, rings: &Rings, idx: u16) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while rings.used_idx(mem) != idx {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Entries in a /proc/self directory.
pub fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}
