//! Opening a host image file without letting its type block the caller.
//!
//! `open(2)` of a FIFO for reading waits for a writer, and opening a
//! character device may wait or have side effects (a tty becoming the
//! controlling terminal). Images are therefore opened with `O_NONBLOCK`
//! and `O_NOCTTY`, the caller checks the type of the opened fd (`fstat`,
//! never the path, which could be swapped in between), and `O_NONBLOCK` is
//! cleared again so that reads and writes of the accepted file behave
//! normally.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` (read-write unless `read_only`) without blocking on its
/// type, and returns the file with the metadata of the opened fd. The file
/// is still non-blocking: call [`make_blocking`] once its type is accepted.
pub fn open_nonblocking(path: &Path, read_only: bool) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Clears `O_NONBLOCK` on `file`.
pub fn make_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on an fd owned by `file`, which outlives the call;
    // it only reads the fd's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on the same owned fd changes only its status flags.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
