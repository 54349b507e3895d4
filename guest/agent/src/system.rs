//! Side effects the agent cannot perform on a fake root: mounting, running
//! helper programs, and power actions. [`RealSystem`] does them for real;
//! tests use a recording fake.

use std::ffi::CString;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::protocol::{FloodPlan, IoBenchReply};

/// A power action, performed after its response has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power the machine off (`reboot(RB_POWER_OFF)`).
    PowerOff,
    /// Reboot the machine (`reboot(RB_AUTOBOOT)`).
    Reboot,
    /// Crash the kernel (`c` to `/proc/sysrq-trigger`).
    Panic,
}

/// What a helper program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout followed by its stderr, lossily decoded.
    pub output: String,
}

/// The agent's side-effecting operations.
pub trait System: Send + Sync {
    /// Mounts `source` of type `fstype` at `target`.
    fn mount(&self, source: &str, target: &Path, fstype: &str, read_only: bool) -> io::Result<()>;
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Runs `program` with `args` and collects its output.
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput>;
    /// Performs a power action. On success it does not return in a real guest.
    fn power(&self, action: PowerAction) -> io::Result<()>;
    /// Whether `path` may be written (`access(W_OK)`): `Ok(false)` for a
    /// read-only file system or a refusal, an error if it does not exist.
    fn writable(&self, path: &Path) -> io::Result<bool>;
    /// Connects to vsock `cid:port`, sends `payload`, shuts down the write
    /// side and reads until the peer closes (at most `max_reply` bytes),
    /// each step bounded by `timeout`.
    fn vsock_dial(
        &self,
        cid: u32,
        port: u32,
        payload: &[u8],
        timeout: Duration,
        max_reply: u64,
    ) -> io::Result<Vec<u8>>;
    /// Binds vsock `port` and echoes every connection on a background
    /// thread; returns once the port is bound.
    fn vsock_echo(&self, port: u32) -> io::Result<()>;
    /// Starts the load generators of `plan` on background threads (a
    /// checked plan: see [`crate::handlers::flood`]); returns once they run.
    fn flood(&self, plan: &FloodPlan) -> io::Result<()>;
    /// Binds guest vsock `port` and serves one stream sink connection on a
    /// background thread (see [`crate::iobench::spawn_vsock_sink`]);
    /// returns once the port is bound.
    fn vsock_sink(&self, port: u32, timeout: Duration, max: u64) -> io::Result<()>;
    /// Sends `bytes` bytes to vsock `cid:port` and waits for the peer to
    /// close (see [`crate::iobench::vsock_send`]).
    fn vsock_send(
        &self,
        cid: u32,
        port: u32,
        bytes: u64,
        timeout: Duration,
    ) -> io::Result<IoBenchReply>;
    /// Sends `bytes` bytes of raw frames out of `interface` (see
    /// [`crate::iobench::net_send`]).
    fn net_send(
        &self,
        interface: &str,
        bytes: u64,
        frame_len: usize,
        timeout: Duration,
    ) -> io::Result<IoBenchReply>;
}

/// The real implementation, for the agent binary inside a guest.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSystem;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_str(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains a NUL byte"))
}

impl System for RealSystem {
    fn mount(&self, source: &str, target: &Path, fstype: &str, read_only: bool) -> io::Result<()> {
        let source = c_str(source)?;
        let target = c_path(target)?;
        let fstype = c_str(fstype)?;
        let flags = if read_only { libc::MS_RDONLY } else { 0 };
        let attempt = || {
            // SAFETY: all pointers are valid NUL-terminated strings that
            // outlive the call; a null data pointer means "no options".
            let rc = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    flags,
                    std::ptr::null(),
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        match attempt() {
            // A dead mount (its device was removed) sits on the target:
            // detach it and mount again.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                // SAFETY: `target` is a valid NUL-terminated string for the call.
                let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                attempt()
            }
            other => other,
        }
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let target = c_path(target)?;
        // SAFETY: `target` is a valid NUL-terminated string for the call.
        let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
        let out = Command::new(program).args(args).output()?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(CommandOutput {
            success: out.status.success(),
            output,
        })
    }

    fn power(&self, action: PowerAction) -> io::Result<()> {
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let command = match action {
            PowerAction::Panic => return std::fs::write("/proc/sysrq-trigger", b"c"),
            PowerAction::PowerOff => libc::RB_POWER_OFF,
            PowerAction::Reboot => libc::RB_AUTOBOOT,
        };
        // SAFETY: reboot(2) with a valid command; it only returns on error.
        let rc = unsafe { libc::reboot(command) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn writable(&self, path: &Path) -> io::Result<bool> {
        let c = c_path(path)?;
        // SAFETY: `c` is a valid NUL-terminated string for the call.
        let rc = unsafe { libc::access(c.as_ptr(), libc::W_OK) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EROFS | libc::EACCES | libc::EPERM) => Ok(false),
                _ => Err(error),
            };
        }
        // access() trusts the mode bits; a file system whose server refuses
        // writes (virtio-fs served read-only) only says so on a real write.
        // Try one: open the file for writing, or create and remove a probe
        // file in the directory.
        let refused = |e: &io::Error| {
            matches!(
                e.raw_os_error(),
                Some(libc::EROFS | libc::EACCES | libc::EPERM)
            )
        };
        if path.is_dir() {
            let probe = path.join(format!(".uvm-agent-writable-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    std::fs::remove_file(&probe)?;
                    Ok(true)
                }
                Err(e) if refused(&e) => Ok(false),
                Err(e) => Err(e),
            }
        } else {
            match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(_) => Ok(true),
                Err(e) if refused(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }

    fn vsock_dial(
        &self,
        cid: u32,
        port: u32,
        payload: &[u8],
        timeout: Duration,
        max_reply: u64,
    ) -> io::Result<Vec<u8>> {
        crate::vsock::dial(cid, port, payload, timeout, max_reply)
    }

    fn vsock_echo(&self, port: u32) -> io::Result<()> {
        crate::vsock::spawn_echo(port)
    }

    fn flood(&self, plan: &FloodPlan) -> io::Result<()> {
        crate::flood::start(plan)
    }

    fn vsock_sink(&self, port: u32, timeout: Duration, max: u64) -> io::Result<()> {
        crate::iobench::spawn_vsock_sink(port, timeout, max)
    }

    fn vsock_send(
        &self,
        cid: u32,
        port: u32,
        bytes: u64,
        timeout: Duration,
    ) -> io::Result<IoBenchReply> {
        crate::iobench::vsock_send(cid, port, bytes, timeout)
    }

    fn net_send(
        &self,
        interface: &str,
        bytes: u64,
        frame_len: usize,
        timeout: Duration,
    ) -> io::Result<IoBenchReply> {
        crate::iobench::net_send(interface, bytes, frame_len, timeout)
    }
}

pub mod fake {
    //! A recording [`System`] for tests: mounts, commands and power actions
    //! are recorded, never performed.

    use super::{CommandOutput, PowerAction, System};
    use crate::protocol::{FloodPlan, IoBenchReply};
    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Duration;

    /// One recorded mount.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MountCall {
        /// The source (virtio-fs tag).
        pub source: String,
        /// The mount point.
        pub target: PathBuf,
        /// The file system type.
        pub fstype: String,
        /// Whether it was read-only.
        pub read_only: bool,
    }

    #[derive(Debug, Default)]
    struct Record {
        mounts: Vec<MountCall>,
        unmounts: Vec<PathBuf>,
        commands: Vec<String>,
        power: Vec<PowerAction>,
        fail_commands: bool,
        read_only: Vec<PathBuf>,
        host_replies: BTreeMap<u32, Vec<u8>>,
        dials: Vec<(u32, Vec<u8>)>,
        echo_ports: Vec<u32>,
        floods: Vec<FloodPlan>,
        sinks: Vec<u32>,
        sends: Vec<String>,
    }

    /// A fake [`System`]; commands succeed (printing nothing) unless
    /// [`FakeSystem::fail_commands`] is set; existing paths are writable
    /// unless under a [`FakeSystem::set_read_only`] path; a vsock dial is
    /// refused unless [`FakeSystem::set_host_reply`] set up its port; echo
    /// listeners are recorded (a second one on a port is "address in use").
    #[derive(Debug, Default)]
    pub struct FakeSystem {
        record: Mutex<Record>,
    }

    impl FakeSystem {
        fn with<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
            let mut guard = match self.record.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut guard)
        }

        /// Makes every later command exit non-zero (true) or zero (false).
        pub fn fail_commands(&self, fail: bool) {
            self.with(|r| r.fail_commands = fail);
        }

        /// The mounts performed so far.
        pub fn mounts(&self) -> Vec<MountCall> {
            self.with(|r| r.mounts.clone())
        }

        /// The unmounts performed so far.
        pub fn unmounts(&self) -> Vec<PathBuf> {
            self.with(|r| r.unmounts.clone())
        }

        /// The commands run so far, each as `program arg arg ...`.
        pub fn commands(&self) -> Vec<String> {
            self.with(|r| r.commands.clone())
        }

        /// The power actions requested so far.
        pub fn power_actions(&self) -> Vec<PowerAction> {
            self.with(|r| r.power.clone())
        }

        /// Makes `path` and everything under it read-only.
        pub fn set_read_only(&self, path: impl Into<PathBuf>) {
            let path = path.into();
            self.with(|r| r.read_only.push(path));
        }

        /// Makes host port `port` accept dials, answering `prefix`
        /// followed by the payload.
        pub fn set_host_reply(&self, port: u32, prefix: &[u8]) {
            self.with(|r| r.host_replies.insert(port, prefix.to_vec()));
        }

        /// The vsock dials so far, as (port, payload).
        pub fn dials(&self) -> Vec<(u32, Vec<u8>)> {
            self.with(|r| r.dials.clone())
        }

        /// The floods started, in order.
        pub fn floods(&self) -> Vec<FloodPlan> {
            self.with(|r| r.floods.clone())
        }

        /// The echo listeners bound, in order.
        pub fn echo_ports(&self) -> Vec<u32> {
            self.with(|r| r.echo_ports.clone())
        }

        /// The vsock sinks bound, in order.
        pub fn sinks(&self) -> Vec<u32> {
            self.with(|r| r.sinks.clone())
        }

        /// The benchmark sends made, in order, as `vsock <cid>:<port>
        /// <bytes>` or `net <interface> <bytes> <frame_len>`.
        pub fn sends(&self) -> Vec<String> {
            self.with(|r| r.sends.clone())
        }
    }

    impl System for FakeSystem {
        fn mount(
            &self,
            source: &str,
            target: &Path,
            fstype: &str,
            read_only: bool,
        ) -> io::Result<()> {
            self.with(|r| {
                r.mounts.push(MountCall {
                    source: source.to_owned(),
                    target: target.to_path_buf(),
                    fstype: fstype.to_owned(),
                    read_only,
                })
            });
            Ok(())
        }

        fn unmount(&self, target: &Path) -> io::Result<()> {
            self.with(|r| r.unmounts.push(target.to_path_buf()));
            Ok(())
        }

        fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
            let line = std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            Ok(self.with(|r| {
                r.commands.push(line);
                CommandOutput {
                    success: !r.fail_commands,
                    output: if r.fail_commands { "failed\n" } else { "" }.to_owned(),
                }
            }))
        }

        fn power(&self, action: PowerAction) -> io::Result<()> {
            self.with(|r| r.power.push(action));
            Ok(())
        }

        fn writable(&self, path: &Path) -> io::Result<bool> {
            std::fs::symlink_metadata(path)?;
            Ok(self.with(|r| !r.read_only.iter().any(|ro| path.starts_with(ro))))
        }

        fn vsock_dial(
            &self,
            _cid: u32,
            port: u32,
            payload: &[u8],
            _timeout: Duration,
            max_reply: u64,
        ) -> io::Result<Vec<u8>> {
            self.with(|r| {
                r.dials.push((port, payload.to_vec()));
                let Some(prefix) = r.host_replies.get(&port) else {
                    return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
                };
                let mut reply = prefix.clone();
                reply.extend_from_slice(payload);
                reply.truncate(usize::try_from(max_reply).unwrap_or(usize::MAX));
                Ok(reply)
            })
        }

        fn vsock_echo(&self, port: u32) -> io::Result<()> {
            self.with(|r| {
                if r.echo_ports.contains(&port) {
                    return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
                }
                r.echo_ports.push(port);
                Ok(())
            })
        }

        fn flood(&self, plan: &FloodPlan) -> io::Result<()> {
            self.with(|r| r.floods.push(plan.clone()));
            Ok(())
        }

        fn vsock_sink(&self, port: u32, _timeout: Duration, _max: u64) -> io::Result<()> {
            self.with(|r| {
                if r.sinks.contains(&port) {
                    return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
                }
                r.sinks.push(port);
                Ok(())
            })
        }

        fn vsock_send(
            &self,
            cid: u32,
            port: u32,
            bytes: u64,
            _timeout: Duration,
        ) -> io::Result<IoBenchReply> {
            self.with(|r| r.sends.push(format!("vsock {cid}:{port} {bytes}")));
            Ok(IoBenchReply {
                bytes,
                ops: bytes.div_ceil(64 << 10),
                elapsed_us: 1,
            })
        }

        fn net_send(
            &self,
            interface: &str,
            bytes: u64,
            frame_len: usize,
            _timeout: Duration,
        ) -> io::Result<IoBenchReply> {
            self.with(|r| r.sends.push(format!("net {interface} {bytes} {frame_len}")));
            Ok(IoBenchReply {
                bytes,
                ops: bytes.div_ceil(frame_len as u64),
                elapsed_us: 1,
            })
        }
    }
}

#[cfg(test)]
mod real_system_tests {
    use super::*;

    #[test]
    fn writable_probes_directories_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RealSystem.writable(dir.path()).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(RealSystem.writable(&file).unwrap());
        assert_eq!(std::fs::read(&file).unwrap(), b"x", "not truncated");
        assert!(RealSystem.writable(&dir.path().join("missing")).is_err());
    }
}
