//! The guest side of [`crate::protocol::Op::Flood`]: load generators that
//! hammer every named device at once, each on a thread of its own until
//! the plan's deadline, for host containment tests (the host must stay
//! responsive and bounded while they run). Errors end only the generator
//! that met them, with a line on stderr.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::protocol::FloodPlan;

/// Bytes per disk write.
const DISK_CHUNK: usize = 64 << 10;
/// Disk writes between two fsyncs.
const WRITES_PER_SYNC: u64 = 16;
/// The disk area written: from 1 MiB on, at most this long.
const DISK_SPAN: u64 = 16 << 20;
/// Bytes of each raw frame.
const FRAME_LEN: usize = 1024;
/// The EtherType of the frames (IEEE local experimental 1).
const ETHERTYPE: u16 = 0x88b5;

/// Starts one generator per device of `plan`.
pub fn start(plan: &FloodPlan) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(u64::from(plan.seconds));
    for disk in &plan.disks {
        let path = format!("/dev/{disk}");
        let file = OpenOptions::new().write(true).open(&path)?;
        spawn(&format!("flood-{disk}"), move || disk_load(&file, deadline))?;
    }
    for nic in &plan.nics {
        let socket = RawSocket::bind(nic)?;
        spawn(&format!("flood-{nic}"), move || socket.load(deadline))?;
    }
    if let Some(port) = plan.vsock_port {
        spawn("flood-vsock", move || vsock_load(port, deadline))?;
    }
    if plan.console {
        let console = OpenOptions::new().write(true).open("/dev/console")?;
        spawn("flood-console", move || console_load(console, deadline))?;
    }
    Ok(())
}

fn spawn(name: &str, body: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    let label = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Err(e) = body() {
                eprintln!("uvm-agent: {label}: {e}");
            }
        })
        .map(drop)
}

fn disk_load(file: &File, deadline: Instant) -> io::Result<()> {
    let chunk = vec![0x5au8; DISK_CHUNK];
    let size = file.metadata()?.len().max(block_device_size(file));
    let span = size.saturating_sub(1 << 20).min(DISK_SPAN);
    if span < DISK_CHUNK as u64 {
        return Err(io::Error::other("the disk is too small to flood"));
    }
    let mut n = 0u64;
    while Instant::now() < deadline {
        let offset = (1 << 20) + (n * DISK_CHUNK as u64) % (span - DISK_CHUNK as u64 + 1);
        file.write_at(&chunk, offset)?;
        n += 1;
        if n.is_multiple_of(WRITES_PER_SYNC) {
            file.sync_data()?;
        }
    }
    Ok(())
}

/// The size of a block device (0 when the ioctl fails: a regular file's
/// metadata has it).
fn block_device_size(file: &File) -> u64 {
    use std::os::fd::AsRawFd;
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if rc == 0 { size } else { 0 }
}

/// The size of a block device or a regular file.
pub(crate) fn device_size(file: &File) -> io::Result<u64> {
    let metadata = file.metadata()?;
    if metadata.is_file() {
        return Ok(metadata.len());
    }
    Ok(block_device_size(file))
}

/// `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

fn vsock_load(port: u32, deadline: Instant) -> io::Result<()> {
    let payload = [0xa5u8; 4096];
    while Instant::now() < deadline {
        // Refused or reset connections are part of the load.
        if let Ok(mut stream) = crate::vsock::connect(2, port, Duration::from_secs(1)) {
            let _ = stream.write_all(&payload);
        }
    }
    Ok(())
}

fn console_load(mut console: File, deadline: Instant) -> io::Result<()> {
    let line = b"uvm-agent flood: console line of the hostile-guest test, 80 bytes long.......\n";
    while Instant::now() < deadline {
        console.write_all(line)?;
    }
    Ok(())
}

/// An `AF_PACKET` socket bound to one interface.
pub(crate) struct RawSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    /// Opens a raw socket sending out of `interface`.
    pub(crate) fn bind(interface: &str) -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        let name = CString::new(interface).map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: if_nametoindex reads the NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let protocol = i32::from(ETHERTYPE.to_be());
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        Ok(RawSocket {
            fd,
            ifindex: ifindex as i32,
        })
    }

    fn load(&self, deadline: Instant) -> io::Result<()> {
        while Instant::now() < deadline {
            self.send_frame(FRAME_LEN)?;
        }
        Ok(())
    }

    /// Sends one broadcast frame of `len` bytes (at most [`MAX_FRAME`]);
    /// `Ok(false)` when the interface's queue is full (`ENOBUFS`: the
    /// caller may try again; this yields the CPU first).
    pub(crate) fn send_frame(&self, len: usize) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let mut frame = [0u8; MAX_FRAME];
        let len = len.min(MAX_FRAME);
        frame[..6].fill(0xff);
        frame[6..12].copy_from_slice(&[0x02, 0x75, 0x76, 0xf1, 0x00, 0x01]);
        frame[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        let mut to: libc::sockaddr_ll = unsafe_zeroed_sockaddr_ll();
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].fill(0xff);
        // SAFETY: sendto(2) reads `len` bytes of `frame` and `to`, both
        // valid for the lengths passed.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                len,
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(e);
            }
            std::thread::yield_now();
            return Ok(false);
        }
        Ok(true)
    }
}

/// The largest frame [`RawSocket::send_frame`] sends.
pub(crate) const MAX_FRAME: usize = 1514;

fn unsafe_zeroed_sockaddr_ll() -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}
