//! Waiting for a device to appear or disappear (hot plug).

use std::path::Path;
use std::time::{Duration, Instant};

use super::{HandlerError, HandlerResult, check_name};
use crate::protocol::{DeviceClass, WaitReply};

/// How often the wait polls sysfs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The sysfs path whose existence means "the device is present".
pub fn presence_path(root: &Path, class: DeviceClass, name: &str) -> std::path::PathBuf {
    match class {
        DeviceClass::Block => root.join("sys/block").join(name),
        DeviceClass::Net => root.join("sys/class/net").join(name),
    }
}

/// `wait_device`: polls until the device's presence equals `present`, or
/// fails with a timeout after `timeout_ms`.
pub fn wait_device(
    root: &Path,
    name: &str,
    class: DeviceClass,
    present: bool,
    timeout_ms: u64,
) -> HandlerResult<WaitReply> {
    check_name("device", name)?;
    let path = presence_path(root, class, name);
    let start = Instant::now();
    let timeout = Duration::from_millis(timeout_ms);
    loop {
        if path.exists() == present {
            return Ok(WaitReply {
                present,
                waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        if start.elapsed() >= timeout {
            let state = if present { "appear" } else { "disappear" };
            return Err(HandlerError::Timeout(format!(
                "{} did not {state} within {timeout_ms} ms",
                path.display()
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use std::fs;

    #[test]
    fn waits_for_appearance_and_disappearance() {
        let root = tempfile::tempdir().unwrap();
        let sdb = root.path().join("sys/block/sdb");
        let creator = {
            let sdb = sdb.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                fs::create_dir_all(sdb).unwrap();
            })
        };
        let reply = wait_device(root.path(), "sdb", DeviceClass::Block, true, 5000).unwrap();
        assert!(reply.present);
        creator.join().unwrap();

        let remover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            fs::remove_dir(sdb).unwrap();
        });
        let reply = wait_device(root.path(), "sdb", DeviceClass::Block, false, 5000).unwrap();
        assert!(!reply.present);
        remover.join().unwrap();
    }

    #[test]
    fn times_out() {
        let root = tempfile::tempdir().unwrap();
        let error = wait_device(root.path(), "eth1", DeviceClass::Net, true, 20).unwrap_err();
        assert_eq!(error.to_body().kind, ErrorKind::Timeout);
        // Already absent: answers at once.
        let reply = wait_device(root.path(), "eth1", DeviceClass::Net, false, 0).unwrap();
        assert_eq!(reply.waited_ms, 0);
    }
}
