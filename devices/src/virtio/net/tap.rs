//! A tap device from /dev/net/tun with a virtio-net header on every frame.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::backend::NetBackend;
use super::device::VNET_HDR_SIZE;

/// `_IOW('T', 202, int)`.
const TUNSETIFF: u64 = 0x4004_54ca;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: u64 = 0x4004_54d0;
/// `_IOW('T', 216, int)`.
const TUNSETVNETHDRSZ: u64 = 0x4004_54d8;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
/// Longest interface name, without the NUL.
const IFNAMSIZ: usize = 16;

/// `struct ifreq` as TUNSETIFF uses it: name and flags, padded to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// Why a tap could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name is empty, too long, or has a NUL.
    #[error("invalid tap name {0:?}")]
    Name(String),
    /// /dev/net/tun could not be opened.
    #[error("cannot open /dev/net/tun: {0}")]
    Open(io::Error),
    /// An ioctl on the tap failed.
    #[error("{what} failed: {source}")]
    Ioctl {
        /// The ioctl.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// An open tap device (non-blocking, with IFF_VNET_HDR and no offloads).
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates or attaches to the tap `name` (`%d` picks a free number).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(TapError::Name(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        let fd = file.as_raw_fd();
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is a
        // properly sized, initialised one that outlives the call.
        let r = unsafe { libc::ioctl(fd, TUNSETIFF as _, &mut req as *mut IfReq) };
        check(r, "TUNSETIFF")?;
        let hdr = VNET_HDR_SIZE as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which
        // points at `hdr` for the duration of the call.
        let r = unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ as _, &hdr as *const libc::c_int) };
        check(r, "TUNSETVNETHDRSZ")?;
        // SAFETY: TUNSETOFFLOAD takes its flags by value; no memory is passed.
        let r = unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, 0 as libc::c_ulong) };
        check(r, "TUNSETOFFLOAD")?;
        let end = req.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        tracing::info!(tap = %name, "tap device opened");
        Ok(Tap { file, name })
    }

    /// The interface name the kernel chose.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn check(r: libc::c_int, what: &'static str) -> Result<(), TapError> {
    if r < 0 {
        return Err(TapError::Ioctl {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl NetBackend for Tap {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // No offloads were negotiated: the header is all zero.
        let hdr = [0u8; VNET_HDR_SIZE];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers of the given lengths,
        // which writev only reads.
        let n = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut hdr = [0u8; VNET_HDR_SIZE];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point at live, writable buffers of the given
        // lengths that nothing else touches during the call.
        let n = unsafe { libc::readv(self.file.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(VNET_HDR_SIZE))
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }
}
