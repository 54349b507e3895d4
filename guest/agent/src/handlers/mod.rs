//! The operation handlers. Each takes the root of the file system it
//! inspects (`/` in a guest, a temporary tree in tests) and returns a typed
//! reply or a [`HandlerError`].

pub mod block;
pub mod flood;
pub mod fs;
pub mod iobench;
pub mod net;
pub mod proc;
pub mod scsi;
pub mod shares;
pub mod virtio_pci;
pub mod vsock;
pub mod wait;

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::protocol::{ErrorBody, ErrorKind};

/// A handler failure, convertible to the protocol's error body.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// An argument is malformed or out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A wait timed out.
    #[error("{0}")]
    Timeout(String),
    /// A helper program failed.
    #[error("{0}")]
    CommandFailed(String),
    /// Another I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl HandlerError {
    /// Wraps an I/O error, turning "not found" into [`HandlerError::NotFound`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if source.kind() == io::ErrorKind::NotFound {
            Self::NotFound(format!("{context}: {source}"))
        } else {
            Self::Io { context, source }
        }
    }

    /// The protocol error body for this failure.
    pub fn to_body(&self) -> ErrorBody {
        let kind = match self {
            Self::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::CommandFailed(_) => ErrorKind::CommandFailed,
            Self::Io { .. } => ErrorKind::Io,
        };
        let errno = match self {
            Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        };
        ErrorBody::new(kind, self.to_string()).with_errno(errno)
    }
}

/// Result type of the handlers.
pub type HandlerResult<T> = Result<T, HandlerError>;

/// Checks that `name` is a single path component (a device or interface name).
pub fn check_name(what: &str, name: &str) -> HandlerResult<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(HandlerError::InvalidArgument(format!(
            "invalid {what} name {name:?}"
        )));
    }
    Ok(())
}

/// Maps an absolute guest path onto `root`, refusing `..` components.
pub fn guest_path(root: &Path, path: &str) -> HandlerResult<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(HandlerError::InvalidArgument(format!(
            "path {} is not absolute",
            path.display()
        )));
    }
    let mut out = root.to_path_buf();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(HandlerError::InvalidArgument(format!(
                    "path {} may not contain ..",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// The last PCI function address (`dddd:bb:dd.f`) among the components of
/// a sysfs device path (such as the target of `/sys/block/sda/device`).
pub fn pci_function(path: &Path) -> Option<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .rfind(|part| is_pci_function(part))
        .map(str::to_owned)
}

fn is_pci_function(text: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = text.split(':').collect();
    let [domain, bus, slot_function] = parts.as_slice() else {
        return false;
    };
    let Some((slot, function)) = slot_function.split_once('.') else {
        return false;
    };
    hex(domain, 4) && hex(bus, 2) && hex(slot, 2) && function.len() == 1 && hex(function, 1)
}

/// Reads a small sysfs/proc file and trims it.
pub fn read_trimmed(path: &Path) -> HandlerResult<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| HandlerError::io(format!("read {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_checked() {
        assert!(check_name("device", "sda").is_ok());
        assert!(check_name("device", "../sda").is_err());
        assert!(check_name("device", "").is_err());
        assert!(check_name("device", "..").is_err());
        let root = Path::new("/tmp/root");
        assert_eq!(
            guest_path(root, "/mnt/a/./b").unwrap(),
            Path::new("/tmp/root/mnt/a/b")
        );
        assert!(guest_path(root, "/mnt/../etc").is_err());
        assert!(guest_path(root, "relative").is_err());
    }

    #[test]
    fn pci_functions_are_found_in_device_paths() {
        let path =
            Path::new("../../devices/pci0000:00/0000:00:03.0/virtio1/host0/target0:0:1/0:0:1:2");
        assert_eq!(pci_function(path).as_deref(), Some("0000:00:03.0"));
        let nested = Path::new("/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.1/virtio3");
        assert_eq!(pci_function(nested).as_deref(), Some("0000:01:00.1"));
        assert_eq!(
            pci_function(Path::new("../../devices/platform/virtio-mmio.0")),
            None
        );
        assert!(!is_pci_function("pci0000:00"));
        assert!(!is_pci_function("0:0:1:2"));
    }

    #[test]
    fn not_found_is_classified() {
        let error = HandlerError::io("x", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(error.to_body().kind, ErrorKind::NotFound);
        let error = HandlerError::io("x", io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(error.to_body().kind, ErrorKind::Io);
        assert_eq!(error.to_body().errno, None);
        let error = HandlerError::io("x", io::Error::from_raw_os_error(libc::EROFS));
        assert_eq!(error.to_body().errno, Some(libc::EROFS));
    }
}
