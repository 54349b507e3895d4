//! Serving connections: the line loop (any `BufRead` + `Write`, so tests
//! drive it in memory) and the vsock listener.

use std::io::{self, BufRead, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::agent::Agent;
use crate::protocol::{self, ErrorKind, Response};

/// The longest request line accepted (8 MiB: a 1 MiB write is 2 MiB of hex).
pub const MAX_LINE: usize = 8 << 20;

/// How long the agent waits between flushing a power action's response and
/// performing the action. The guest's vsock transport sends queued data
/// from a kernel worker; a panic or power-off right after the write can cut
/// it short, and the host then sees a reset instead of the answer (seen in
/// the lab when four guests boot at once).
pub const POWER_ACTION_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn send(writer: &mut impl Write, response: &Response) -> io::Result<()> {
    let line =
        protocol::encode(response).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    writer.write_all(line.as_bytes())?;
    writer.write_all(b"\n")?;
    writer.flush()
}

/// Reads one line of at most [`MAX_LINE`] bytes; `Ok(None)` at end of stream.
/// An over-long line is consumed and reported as `Err(too_long)` = `Ok(Some(Err))`.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<Result<String, usize>>> {
    let mut buf = Vec::new();
    let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
    let n = Read::take(&mut *reader, limit).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE && !buf.ends_with(b"\n") {
        // Skip the rest of the over-long line.
        let mut rest = Vec::new();
        let skipped = reader.read_until(b'\n', &mut rest)?;
        return Ok(Some(Err(buf.len() + skipped)));
    }
    Ok(Some(Ok(String::from_utf8_lossy(&buf).into_owned())))
}

/// Serves one connection until the peer closes it: one response line per
/// request line (blank lines are ignored). A power action is performed
/// [`POWER_ACTION_GRACE`] after its response has been flushed, and ends the
/// session.
pub fn serve<R: BufRead, W: Write>(agent: &Agent, mut reader: R, mut writer: W) -> io::Result<()> {
    while let Some(line) = read_line(&mut reader)? {
        let line = match line {
            Ok(line) => line,
            Err(len) => {
                let response = Response::error(
                    0,
                    ErrorKind::BadRequest,
                    format!("request line of {len} bytes is over the {MAX_LINE}-byte limit"),
                );
                send(&mut writer, &response)?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let handled = match protocol::decode_request(line.trim()) {
            Ok(request) => agent.handle(&request),
            Err(response) => {
                send(&mut writer, &response)?;
                continue;
            }
        };
        send(&mut writer, &handled.response)?;
        if let Some(action) = handled.then {
            std::thread::sleep(POWER_ACTION_GRACE);
            eprintln!("uvm-agent: performing {action:?}");
            return agent.perform(action);
        }
    }
    Ok(())
}

/// A listening `AF_VSOCK` stream socket.
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl VsockListener {
    /// Binds to `port` on any CID and listens.
    pub fn bind(port: u32) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = check(unsafe {
            libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes for the call,
        // and `fd` is an open socket.
        check(unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        })?;
        // SAFETY: listen(2) on an open, bound socket.
        check(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 16) })?;
        Ok(Self { fd })
    }

    /// Like [`VsockListener::accept`], waiting at most `timeout` for the
    /// connection (then a `TimedOut` error).
    pub fn accept_within(&self, timeout: std::time::Duration) -> io::Result<(std::fs::File, u32)> {
        let mut pollfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll(2) on one valid pollfd that outlives the call.
        let ready = check(unsafe { libc::poll(&raw mut pollfd, 1, ms) })?;
        if ready == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no connection came in time",
            ));
        }
        self.accept()
    }

    /// Accepts one connection, returning it as a `File` (read and write) and
    /// the peer's CID.
    pub fn accept(&self) -> io::Result<(std::fs::File, u32)> {
        // SAFETY: as in bind, an all-zero sockaddr_vm is valid.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        // SAFETY: `addr`/`len` are valid for writing for the duration of the
        // call, and the listening fd is open.
        let raw = check(unsafe {
            libc::accept4(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                (&raw mut addr).cast::<libc::sockaddr>(),
                &raw mut len,
                libc::SOCK_CLOEXEC,
            )
        })?;
        // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok((std::fs::File::from(fd), addr.svm_cid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::PowerAction;
    use crate::system::fake::FakeSystem;
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn session(input: &str) -> (Vec<Value>, Arc<FakeSystem>) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc")).unwrap();
        std::fs::write(root.path().join("proc/uptime"), "1.5 2.5\n").unwrap();
        let system = Arc::new(FakeSystem::default());
        let agent = Agent::new(root.path(), system.clone());
        let mut out = Vec::new();
        serve(&agent, input.as_bytes(), &mut out).unwrap();
        let responses = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (responses, system)
    }

    #[test]
    fn answers_each_line_in_order() {
        let (responses, _) = session(
            "{\"v\":1,\"id\":1,\"op\":\"ping\"}\n\n{\"v\":1,\"id\":2,\"op\":\"uptime\"}\nnot json\n{\"v\":9,\"id\":3,\"op\":\"ping\"}\n",
        );
        assert_eq!(responses.len(), 4);
        assert_eq!(responses[0]["ok"]["pong"], json!(true));
        assert_eq!(
            responses[1],
            json!({"v":1,"id":2,"ok":{"uptime_secs":1.5,"idle_secs":2.5}})
        );
        assert_eq!(responses[2]["error"]["kind"], json!("bad_request"));
        assert_eq!(responses[3]["id"], json!(3));
        assert_eq!(responses[3]["error"]["kind"], json!("unsupported_version"));
    }

    #[test]
    fn power_off_answers_then_acts_and_ends_the_session() {
        let (responses, system) = session(
            "{\"v\":1,\"id\":1,\"op\":\"power_off\"}\n{\"v\":1,\"id\":2,\"op\":\"ping\"}\n",
        );
        assert_eq!(responses, vec![json!({"v":1,"id":1,"ok":{}})]);
        assert_eq!(system.power_actions(), vec![PowerAction::PowerOff]);
    }

    #[test]
    fn over_long_lines_are_refused_and_skipped() {
        let mut input = "x".repeat(MAX_LINE + 10);
        input.push('\n');
        input.push_str("{\"v\":1,\"id\":5,\"op\":\"ping\"}\n");
        let (responses, _) = session(&input);
        assert_eq!(responses.len(), 2);
        assert_eq!(responses[0]["error"]["kind"], json!("bad_request"));
        assert_eq!(responses[1]["id"], json!(5));
    }
}
