//! The error type of the virtio-fs device and its daemon helper.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a virtio-fs operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag is empty; the guest mounts a share by its tag, so it needs one.
    #[error("virtio-fs tag is empty")]
    TagEmpty,
    /// The tag does not fit the 36-byte `tag` field of the device configuration.
    #[error("virtio-fs tag is {len} bytes long; at most {max} bytes fit", max = super::config::TAG_LEN)]
    TagTooLong {
        /// Length of the rejected tag in bytes.
        len: usize,
    },
    /// The tag contains a NUL byte, which would cut it short in the guest.
    #[error("virtio-fs tag contains a NUL byte")]
    TagHasNul,
    /// The device needs at least one request queue.
    #[error("virtio-fs needs at least one request queue")]
    NoRequestQueues,
    /// The queue size is not a power of two between 1 and 32768.
    #[error("invalid virtio-fs queue size {0}: must be a power of two in 1..=32768")]
    InvalidQueueSize(u16),
    /// Connecting to the vhost-user socket failed.
    #[error("cannot connect to the vhost-user socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What the connection attempt returned.
        #[source]
        source: vhost::Error,
    },
    /// A vhost-user request failed (the backend refused it or went away).
    #[error("vhost-user {request} failed: {source}")]
    Protocol {
        /// The request that failed (e.g. `SET_MEM_TABLE`).
        request: &'static str,
        /// What the vhost-user frontend returned.
        #[source]
        source: vhost::Error,
    },
    /// The backend does not offer a feature virtio-fs cannot work without.
    #[error("vhost-user backend lacks the required feature {0}")]
    MissingFeature(&'static str),
    /// The backend serves fewer queues than the device declares.
    #[error("vhost-user backend serves {supported} queues; the device needs {wanted}")]
    TooFewQueues {
        /// Queues the device declares (1 hiprio + request queues).
        wanted: u64,
        /// Queues the backend reported through GET_QUEUE_NUM.
        supported: u64,
    },
    /// A guest memory region is anonymous memory, which the backend cannot map.
    #[error(
        "guest memory region at {guest_addr:#x} is anonymous; vhost-user needs guest memory \
         that is file-backed and shared (e.g. one memfd mapped MAP_SHARED)"
    )]
    AnonymousMemory {
        /// Guest physical start of the region.
        guest_addr: u64,
    },
    /// A guest memory region is file-backed but mapped privately, so the
    /// backend would not see the guest's writes.
    #[error(
        "guest memory region at {guest_addr:#x} is a private mapping; vhost-user needs guest \
         memory mapped MAP_SHARED"
    )]
    PrivateMemory {
        /// Guest physical start of the region.
        guest_addr: u64,
    },
    /// Guest memory has more regions than one SET_MEM_TABLE message carries.
    #[error("guest memory has {count} regions; vhost-user SET_MEM_TABLE carries at most {max}")]
    TooManyRegions {
        /// Regions in guest memory.
        count: usize,
        /// The protocol limit.
        max: usize,
    },
    /// Guest memory has no regions at all.
    #[error("guest memory is empty")]
    NoMemory,
    /// The transport handed over a different number of queues than declared.
    #[error("activation with {got} queues; the device declares {want}")]
    QueueCount {
        /// Queues the device declares.
        want: usize,
        /// Queues in the activation context.
        got: usize,
    },
    /// A ring of a queue does not lie in guest memory.
    #[error("queue {queue}: ring address {addr:#x} is not in guest memory")]
    RingAddress {
        /// The queue index.
        queue: u16,
        /// The offending guest physical address.
        addr: u64,
    },
    /// Creating an eventfd or the epoll instance failed.
    #[error("cannot create {what}: {source}")]
    Fd {
        /// What was being created.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Starting the interrupt thread failed.
    #[error("cannot start the virtio-fs interrupt thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Starting the virtiofsd process failed.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The daemon binary.
        binary: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// virtiofsd exited before its socket appeared.
    #[error("virtiofsd exited early ({status}): {stderr}")]
    DaemonExited {
        /// How it exited.
        status: ExitStatus,
        /// The end of its standard error output.
        stderr: String,
    },
    /// virtiofsd did not create its socket in time.
    #[error("virtiofsd did not create {path} within {timeout:?}")]
    SocketTimeout {
        /// The socket path it was asked to create.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// Waiting for the virtiofsd process failed.
    #[error("cannot check the virtiofsd process: {0}")]
    Wait(#[source] std::io::Error),
}
