//! Real `AF_VSOCK` client connections and echo listeners, used by
//! [`crate::system::RealSystem`] (tests fake them through
//! [`crate::system::System`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::server::VsockListener;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Sets a socket send or receive timeout (`SO_SNDTIMEO`/`SO_RCVTIMEO`).
fn set_timeout(fd: &OwnedFd, option: libc::c_int, timeout: Duration) -> io::Result<()> {
    // A zero timeval would mean "never time out": use at least 1 ms.
    let timeout = timeout.max(Duration::from_millis(1));
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` is a valid timeval of `len` bytes for the duration of the
    // call, and `fd` is an open socket.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const tv).cast::<libc::c_void>(),
            len,
        )
    })?;
    Ok(())
}

/// Sets both socket timeouts of a connected `stream` to `timeout`.
pub fn set_timeouts(stream: &File, timeout: Duration) -> io::Result<()> {
    let fd = stream.as_fd().try_clone_to_owned()?;
    set_timeout(&fd, libc::SO_SNDTIMEO, timeout)?;
    set_timeout(&fd, libc::SO_RCVTIMEO, timeout)
}

/// Connects to vsock `cid:port`; reads and writes time out after `timeout`.
pub fn connect(cid: u32, port: u32, timeout: Duration) -> io::Result<File> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw =
        check(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_timeout(&fd, libc::SO_SNDTIMEO, timeout)?;
    set_timeout(&fd, libc::SO_RCVTIMEO, timeout)?;
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = cid;
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes for the call, and
    // `fd` is an open socket.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            len,
        )
    })
    .map_err(|e| {
        // virtio-vsock answers a connection to a port nobody listens on with
        // a reset: report it as the refusal it is.
        if e.raw_os_error() == Some(libc::ECONNRESET) {
            io::Error::from_raw_os_error(libc::ECONNREFUSED)
        } else {
            e
        }
    })?;
    Ok(File::from(fd))
}

/// Half-closes a connected socket (no more writes; the peer reads EOF).
pub fn shutdown_write(stream: &File) -> io::Result<()> {
    // SAFETY: shutdown(2) on a descriptor `stream` owns and keeps open.
    check(unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) })?;
    Ok(())
}

/// A receive timeout surfaces as `EAGAIN`; call it what it is.
fn timed_out(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::WouldBlock {
        io::Error::from_raw_os_error(libc::ETIMEDOUT)
    } else {
        error
    }
}

/// Connects to `cid:port`, sends `payload` and half-closes while reading
/// (on two threads, so a peer that answers while still reading cannot
/// deadlock us), and returns at most `max_reply` bytes read before EOF.
pub fn dial(
    cid: u32,
    port: u32,
    payload: &[u8],
    timeout: Duration,
    max_reply: u64,
) -> io::Result<Vec<u8>> {
    let stream = connect(cid, port, timeout)?;
    let mut writer = stream.try_clone()?;
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || -> io::Result<()> {
            writer.write_all(payload)?;
            shutdown_write(&writer)
        });
        let mut reply = Vec::new();
        let received = (&stream).take(max_reply).read_to_end(&mut reply);
        let sent = sender
            .join()
            .map_err(|_| io::Error::other("the sending thread panicked"))?;
        // A peer that closes without reading everything is not our failure.
        if let Err(e) = sent
            && !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )
        {
            return Err(timed_out(e));
        }
        received.map_err(timed_out)?;
        Ok(reply)
    })
}

/// Echoes one connection until its peer half-closes, then half-closes.
fn echo_one(stream: File) -> io::Result<()> {
    let mut reader = stream.try_clone()?;
    let mut writer = stream;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
    }
    shutdown_write(&writer)
}

/// Binds vsock `port` (any CID) and echoes each connection on its own
/// thread, forever; returns once the port is bound.
pub fn spawn_echo(port: u32) -> io::Result<()> {
    let listener = VsockListener::bind(port)?;
    std::thread::Builder::new()
        .name(format!("vsock-echo-{port}"))
        .spawn(move || {
            loop {
                match listener.accept() {
                    Ok((stream, cid)) => {
                        std::thread::spawn(move || {
                            if let Err(e) = echo_one(stream) {
                                eprintln!("uvm-agent: echo on port {port} for CID {cid}: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        eprintln!("uvm-agent: echo listener on port {port}: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}
