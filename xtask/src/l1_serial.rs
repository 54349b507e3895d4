//! The L1's second serial port, which carries the program's output apart
//! from the L1 kernel console ([`crate::l1_console`]): where its unix
//! socket lives, the QEMU arguments for both ports, and connecting to it.
//!
//! QEMU serves the socket with `server=on,wait=on`: it creates it and waits
//! for the lab to connect before the L1 runs, so no byte is lost, and it
//! closes it when it exits, which ends the lab's reader.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::error::{Result, XtaskError};

/// The longest path a unix socket address holds (`sun_path` is 108 bytes,
/// the last one the terminating NUL).
pub const SUN_PATH_MAX: usize = 107;

/// The QEMU chardev id of the program's serial port.
const CHARDEV_ID: &str = "program";

/// How long QEMU may take to create the socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the socket of the `nth` L1 of this process goes: `program.sock` in
/// its run directory `dir`, or, when that path is too long for a socket
/// address, a name of its own in the temporary directory.
pub fn socket_path(dir: &Path, nth: u32) -> PathBuf {
    let path = dir.join("program.sock");
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return path;
    }
    std::env::temp_dir().join(format!("uvm-lab-{}-{nth}.sock", std::process::id()))
}

/// The QEMU arguments for the two serial ports: COM1 (`ttyS0`, the kernel
/// console) on QEMU's stdout, COM2 (`ttyS1`, the program) on a unix socket
/// at `socket` that QEMU serves and waits on.
pub fn qemu_args(socket: &Path) -> Vec<String> {
    // QEMU option values double their commas.
    let path = socket.to_string_lossy().replace(',', ",,");
    vec![
        "-serial".into(),
        "stdio".into(),
        "-chardev".into(),
        format!("socket,id={CHARDEV_ID},path={path},server=on,wait=on"),
        "-serial".into(),
        format!("chardev:{CHARDEV_ID}"),
    ]
}

/// Whether a line QEMU prints on stderr is its note that it waits for the
/// lab to connect (expected; shown only with `--verbose`).
pub fn is_wait_note(line: &str) -> bool {
    line.contains("QEMU waiting for connection on")
}

/// Connects to the socket QEMU (`child`) serves at `socket`, retrying until
/// it is there. Fails when QEMU exits first or does not serve it in time.
pub fn connect(socket: &Path, child: &mut Child) -> Result<UnixStream> {
    let started = Instant::now();
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(error) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(XtaskError::Other(format!(
                        "QEMU exited ({status}) before serving the program's serial port at {}",
                        socket.display()
                    )));
                }
                if started.elapsed() > CONNECT_TIMEOUT {
                    let _ = child.kill();
                    return Err(XtaskError::io("connect to", socket)(error));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::process::Command;

    use super::*;

    #[test]
    fn the_socket_fits_a_unix_socket_address() {
        let short = Path::new("/root/.cache/uvm/lab/run-1");
        assert_eq!(socket_path(short, 0), short.join("program.sock"));
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let fallback = socket_path(&long, 3);
        assert!(fallback.starts_with(std::env::temp_dir()));
        assert!(fallback.as_os_str().len() <= SUN_PATH_MAX);
        assert_ne!(socket_path(&long, 4), fallback);
    }

    #[test]
    fn the_program_gets_the_second_serial_port() {
        let args = qemu_args(Path::new("/run/a,b/program.sock"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            args,
            [
                "-serial",
                "stdio",
                "-chardev",
                "socket,id=program,path=/run/a,,b/program.sock,server=on,wait=on",
                "-serial",
                "chardev:program",
            ]
        );
        assert!(is_wait_note(
            "qemu-system-x86_64: -chardev socket,id=program,path=/x,server=on,wait=on: \
             info: QEMU waiting for connection on: disconnected:unix:/x,server=on"
        ));
        assert!(!is_wait_note(
            "qemu-system-x86_64: warning: TCG doesn't support"
        ));
    }

    #[test]
    fn connects_once_the_socket_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("program.sock");
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let serve = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let listener = UnixListener::bind(&path).unwrap();
                listener.accept().unwrap();
            })
        };
        let connected = connect(&path, &mut child);
        let _ = child.kill();
        let _ = child.wait();
        assert!(connected.is_ok(), "{:?}", connected.err());
        serve.join().unwrap();
    }

    #[test]
    fn gives_up_when_qemu_exits_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let error = connect(&dir.path().join("none.sock"), &mut child).unwrap_err();
        assert!(error.to_string().contains("exited"), "{error}");
    }
}
