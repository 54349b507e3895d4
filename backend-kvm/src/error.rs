//! Errors of the VMM, converted to [`uvm_api::Error`] at the API boundary.

use std::path::PathBuf;

/// Why the VMM failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// A KVM ioctl failed.
    #[error("{step}: {source}")]
    Kvm {
        /// The ioctl or step, such as "KVM_CREATE_VM".
        step: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// A boot file (kernel, initrd) could not be read.
    #[error("{what} {path}: {source}")]
    BootFile {
        /// "kernel" or "initrd".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel image is not a bootable bzImage, or loading it failed.
    #[error("kernel {path}: {detail}")]
    BadKernel {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The VM cannot boot with this configuration.
    #[error("cannot boot: {0}")]
    Config(String),
    /// The ACPI tables could not be built.
    #[error("ACPI tables: {0}")]
    Tables(#[from] uvm_devices::acpi::tables::TablesError),
    /// A device could not be placed on a bus.
    #[error("device bus: {0}")]
    Bus(#[from] uvm_devices::bus::BusError),
    /// A host I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the VMM was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A device could not be built or placed.
    #[error("device: {0}")]
    Device(String),
    /// The VMM's control thread is gone (the VM has stopped).
    #[error("the VM's monitor has stopped")]
    Gone,
    /// A pause or resume did not complete.
    #[error("{0}")]
    Control(String),
}

impl VmmError {
    /// A closure mapping a KVM error of `step`.
    pub fn kvm(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { step, source }
    }

    /// A closure mapping an I/O error with `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
        let context = context.into();
        move |source| VmmError::Io { context, source }
    }
}

impl From<VmmError> for uvm_api::Error {
    fn from(e: VmmError) -> Self {
        match e {
            VmmError::Io { context, source } => uvm_api::Error::io(context, source),
            VmmError::BootFile { what, path, source } => {
                uvm_api::Error::io(format!("{what} {}", path.display()), source)
            }
            other => uvm_api::Error::backend(other),
        }
    }
}
