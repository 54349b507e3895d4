//! Starting, watching and reaping a `virtiofsd` (one per share), and
//! finding its binary.
//!
//! The daemon runs as
//! `virtiofsd --socket-path=S --shared-dir=D --cache=never --sandbox=none
//! [--readonly]`, serves exactly one frontend connection and exits when that
//! frontend disconnects. Its standard error is forwarded to `tracing`
//! (target `virtiofsd`) by a helper thread.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::FsError;

/// Environment variable naming the virtiofsd binary to use.
pub const VIRTIOFSD_ENV: &str = "UVM_VIRTIOFSD";
/// How long [`VirtiofsdProcess::spawn`] waits for the socket.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dropped daemon gets to exit after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(1);
/// Lines of standard error kept for error reports.
const STDERR_TAIL: usize = 20;
/// Polling interval while waiting for the socket or an exit.
const POLL: Duration = Duration::from_millis(10);

/// The last lines the daemon wrote to standard error.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running `virtiofsd`; dropping it terminates and reaps the daemon and
/// removes its socket and pid file.
pub struct VirtiofsdProcess {
    child: Child,
    status: Option<ExitStatus>,
    socket_path: PathBuf,
    stderr_tail: Tail,
    log_thread: Option<JoinHandle<()>>,
}

impl VirtiofsdProcess {
    /// Starts `virtiofsd_binary` sharing `shared_dir` on `socket_path`
    /// (read-only if `read_only`) and waits until the socket exists.
    ///
    /// A stale socket at `socket_path` is removed first (the path belongs
    /// to this daemon); any other file there is an error.
    pub fn spawn(
        virtiofsd_binary: &Path,
        shared_dir: &Path,
        socket_path: &Path,
        read_only: bool,
    ) -> Result<Self, FsError> {
        let spawn_error = |source| FsError::Spawn {
            binary: virtiofsd_binary.to_path_buf(),
            source,
        };
        remove_stale_socket(socket_path).map_err(spawn_error)?;
        let mut cmd = Command::new(virtiofsd_binary);
        cmd.args(daemon_args(shared_dir, socket_path, read_only))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let stderr_tail: Tail = Arc::default();
        let log_thread = match child.stderr.take() {
            Some(stderr) => match spawn_log_thread(stderr, child.id(), stderr_tail.clone()) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    reap(&mut child);
                    return Err(spawn_error(e));
                }
            },
            None => None,
        };
        let mut daemon = VirtiofsdProcess {
            child,
            status: None,
            socket_path: socket_path.to_path_buf(),
            stderr_tail,
            log_thread,
        };
        daemon.wait_for_socket(SOCKET_TIMEOUT)?;
        tracing::info!(
            pid = daemon.id(),
            shared_dir = %shared_dir.display(),
            socket = %socket_path.display(),
            read_only,
            "virtiofsd started"
        );
        Ok(daemon)
    }

    /// The daemon's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The socket the daemon listens on.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The exit status if the daemon has exited (it is reaped then).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, FsError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(FsError::Wait)?;
        }
        Ok(self.status)
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus, FsError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // Fails only if the child exited meanwhile; wait() tells.
        let _ = self.child.kill();
        let status = self.child.wait().map_err(FsError::Wait)?;
        self.status = Some(status);
        Ok(status)
    }

    /// Waits until the socket exists, the daemon exits or `timeout` passes.
    fn wait_for_socket(&mut self, timeout: Duration) -> Result<(), FsError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.join_log_thread();
                return Err(FsError::DaemonExited {
                    status,
                    stderr: self.stderr_tail(),
                });
            }
            if is_socket(&self.socket_path) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(FsError::SocketTimeout {
                    path: self.socket_path.clone(),
                    timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The last lines of standard error, joined.
    fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, a grace period, then SIGKILL; reaps the daemon.
    fn terminate(&mut self) {
        match self.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot check virtiofsd"),
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: plain kill(2); the child is not reaped yet, so `pid`
            // still names it and cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            match self.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(POLL),
                Err(_) => break,
            }
        }
        if let Err(error) = self.kill() {
            tracing::error!(%error, pid = self.id(), "cannot kill virtiofsd");
        }
    }

    /// Joins the stderr thread (it ends when the daemon's stderr closes).
    fn join_log_thread(&mut self) {
        if let Some(handle) = self.log_thread.take()
            && handle.join().is_err()
        {
            tracing::warn!("virtiofsd log thread panicked");
        }
    }
}

impl Drop for VirtiofsdProcess {
    fn drop(&mut self) {
        self.terminate();
        self.join_log_thread();
        let mut pid_file = self.socket_path.clone().into_os_string();
        pid_file.push(".pid");
        for path in [self.socket_path.clone(), PathBuf::from(pid_file)] {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(%error, path = %path.display(), "cannot remove a virtiofsd file");
            }
        }
        tracing::debug!(status = ?self.status, "virtiofsd stopped");
    }
}

/// The daemon's command line.
fn daemon_args(shared_dir: &Path, socket_path: &Path, read_only: bool) -> Vec<OsString> {
    let with = |flag: &str, value: &Path| {
        let mut arg = OsString::from(flag);
        arg.push(value);
        arg
    };
    let mut args = vec![
        with("--socket-path=", socket_path),
        with("--shared-dir=", shared_dir),
        OsString::from("--cache=never"),
        OsString::from("--sandbox=none"),
    ];
    if read_only {
        args.push(OsString::from("--readonly"));
    }
    args
}

/// Kills and reaps a child that never became a [`VirtiofsdProcess`].
fn reap(child: &mut Child) {
    let _ = child.kill();
    if let Err(error) = child.wait() {
        tracing::warn!(%error, "cannot reap virtiofsd");
    }
}

/// Forwards the daemon's standard error to `tracing`, keeping a tail.
fn spawn_log_thread(stderr: ChildStderr, pid: u32, tail: Tail) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("virtiofsd-log".into())
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(" ERROR ") || line.contains(" WARN ") {
                    tracing::warn!(target: "virtiofsd", pid, "{line}");
                } else {
                    tracing::debug!(target: "virtiofsd", pid, "{line}");
                }
                let mut t = tail.lock();
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
}

/// Whether `path` is a unix socket.
fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Removes a leftover socket at `path`; refuses any other kind of file.
fn remove_stale_socket(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
    }
}

/// Locates the virtiofsd binary: `$UVM_VIRTIOFSD`, then `PATH`, then
/// `~/.cargo/bin/virtiofsd`, then Debian's `/usr/libexec/virtiofsd`.
pub fn find_virtiofsd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(VIRTIOFSD_ENV).map(PathBuf::from) {
        if is_executable(&p) {
            return Some(p);
        }
        tracing::warn!(
            path = %p.display(),
            "{VIRTIOFSD_ENV} does not name an executable file; searching on"
        );
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("virtiofsd"))
            .find(|p| is_executable(p))
    });
    if on_path.is_some() {
        return on_path;
    }
    let cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/virtiofsd"));
    cargo
        .into_iter()
        .chain(std::iter::once(PathBuf::from("/usr/libexec/virtiofsd")))
        .find(|p| is_executable(p))
}

/// Whether `path` is an executable regular file.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_the_documented_flags() {
        let args = daemon_args(Path::new("/srv/share"), Path::new("/run/fs.sock"), false);
        assert_eq!(
            args,
            [
                "--socket-path=/run/fs.sock",
                "--shared-dir=/srv/share",
                "--cache=never",
                "--sandbox=none"
            ]
        );
        let ro = daemon_args(Path::new("/d"), Path::new("/s"), true);
        assert_eq!(
            ro.last().map(OsString::as_os_str),
            Some("--readonly".as_ref())
        );
    }

    #[test]
    fn a_regular_file_at_the_socket_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, b"x").unwrap();
        let err = remove_stale_socket(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(path.exists());
    }

    #[test]
    fn a_missing_binary_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = VirtiofsdProcess::spawn(
            &dir.path().join("no-such-virtiofsd"),
            dir.path(),
            &dir.path().join("s.sock"),
            false,
        )
        .err()
        .unwrap();
        assert!(matches!(err, FsError::Spawn { .. }), "{err}");
    }
}
