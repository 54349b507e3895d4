//! The benchmark's error type.

use std::time::Duration;

/// What can go wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The guest assets description is missing or malformed.
    #[error("guest assets: {0}")]
    Assets(String),
    /// The uvm API (backend-kvm) failed.
    #[error("{context}: {source}")]
    Uvm {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: uvm_api::Error,
    },
    /// The guest did not get where it should within the time allowed.
    #[error("{what} not seen within {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// The VM or VMM process ended early or misbehaved.
    #[error("{0}")]
    Vm(String),
    /// QEMU refused a QMP command.
    #[error("QMP {command}: {class}: {desc}")]
    Qmp {
        /// The command.
        command: String,
        /// QEMU's error class (`GenericError`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// Bad command-line arguments.
    #[error("usage: {0}")]
    Usage(String),
}

impl BenchError {
    /// A closure turning an I/O error into [`BenchError::Io`] with `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }

    /// A closure turning a uvm error into [`BenchError::Uvm`] with `context`.
    pub fn uvm(context: impl Into<String>) -> impl FnOnce(uvm_api::Error) -> Self {
        let context = context.into();
        move |source| BenchError::Uvm { context, source }
    }
}

/// Results of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
