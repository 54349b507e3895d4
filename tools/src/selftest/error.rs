//! Why the self-test failed.

use std::path::PathBuf;

/// Why the self-test failed.
#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    /// The KVM device node does not exist (the caller may want to skip).
    #[error("{path} does not exist")]
    DeviceMissing {
        /// The device path that was looked for.
        path: PathBuf,
    },
    /// The options make no sense (for example zero exits).
    #[error("invalid self-test options: {0}")]
    InvalidOptions(String),
    /// A KVM ioctl (or opening the device) failed.
    #[error("{step}: {source}")]
    Kvm {
        /// The step that failed, such as "KVM_CREATE_VM".
        step: &'static str,
        /// The errno the kernel returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Mapping the guest memory in this process failed.
    #[error("mmap of {size} bytes of guest memory: {source}")]
    Mmap {
        /// The requested size in bytes.
        size: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The vCPU exited in a way the guest code never asks for.
    #[error("unexpected vCPU exit after {exits} exits: {detail}")]
    UnexpectedExit {
        /// How many exits had been handled before this one.
        exits: u64,
        /// The exit, as `Debug` text.
        detail: String,
    },
    /// The guest halted, but its port writes were not the expected ones.
    #[error("guest output mismatch: {0}")]
    WrongOutput(String),
}

/// Maps a failed KVM ioctl to [`SelftestError::Kvm`] naming `step`.
pub(super) fn kvm_err(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SelftestError {
    move |source| SelftestError::Kvm { step, source }
}
