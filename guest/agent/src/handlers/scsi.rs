//! SCSI host adapters: `/sys/class/scsi_host`, so a client can tell which
//! controller a disk's `H` (host number) is.

use std::path::Path;

use super::{HandlerError, HandlerResult, pci_function, read_trimmed};
use crate::protocol::{ScsiHost, ScsiHostsReply};

/// `list_scsi_hosts`: every `hostN` of `/sys/class/scsi_host` with its
/// driver and PCI function. A guest without any SCSI host (the directory
/// is missing until the SCSI core is loaded) has none.
pub fn list_scsi_hosts(root: &Path) -> HandlerResult<ScsiHostsReply> {
    let dir = root.join("sys/class/scsi_host");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ScsiHostsReply { hosts: Vec::new() });
        }
        Err(e) => return Err(HandlerError::io(format!("read_dir {}", dir.display()), e)),
    };
    let mut hosts = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
        let Some(host) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_prefix("host"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let pci = std::fs::read_link(&path)
            .ok()
            .and_then(|target| pci_function(&target));
        hosts.push(ScsiHost {
            host,
            driver: read_trimmed(&path.join("proc_name")).ok(),
            pci,
        });
    }
    hosts.sort_by_key(|h| h.host);
    Ok(ScsiHostsReply { hosts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn lists_hosts_with_driver_and_pci_function() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("sys/class/scsi_host")).unwrap();
        for (host, slot) in [(2, "05"), (0, "03")] {
            let dev = r.join(format!(
                "sys/devices/pci0000:00/0000:00:{slot}.0/virtio{host}/host{host}/scsi_host/host{host}"
            ));
            fs::create_dir_all(&dev).unwrap();
            fs::write(dev.join("proc_name"), "virtio_scsi\n").unwrap();
            std::os::unix::fs::symlink(
                format!("../../devices/pci0000:00/0000:00:{slot}.0/virtio{host}/host{host}/scsi_host/host{host}"),
                r.join(format!("sys/class/scsi_host/host{host}")),
            )
            .unwrap();
        }
        let reply = list_scsi_hosts(r).unwrap();
        assert_eq!(
            reply.hosts,
            vec![
                ScsiHost {
                    host: 0,
                    driver: Some("virtio_scsi".into()),
                    pci: Some("0000:00:03.0".into())
                },
                ScsiHost {
                    host: 2,
                    driver: Some("virtio_scsi".into()),
                    pci: Some("0000:00:05.0".into())
                },
            ]
        );
    }

    #[test]
    fn no_scsi_core_means_no_hosts() {
        let root = tempfile::tempdir().unwrap();
        assert!(list_scsi_hosts(root.path()).unwrap().hosts.is_empty());
    }
}
