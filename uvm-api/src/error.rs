//! The one error type of the contract.

use std::time::Duration;

use crate::config_problem::ConfigProblem;
use crate::guest_os::GuestOs;
use crate::resource::{Operation, Resource};
use crate::state::{Action, State};

/// Result alias used throughout the contract.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a backend or the contract itself can report.
///
/// The variants are stable in meaning across backends: a shim may match on
/// them to decide what to do (retry, fall back, report to the user).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend cannot perform `operation` on `resource`; nothing was changed.
    /// `Uvm::supported(resource, operation)` answers false for the same pair.
    #[error("{operation} of {resource} is not supported by this backend")]
    NotSupported {
        /// The resource the call was about.
        resource: Resource,
        /// What was asked of it.
        operation: Operation,
    },
    /// The backend cannot perform this lifecycle action (for example save); nothing was changed.
    /// `Uvm::supports_action(action)` answers false for it.
    #[error("{action} is not supported by this backend")]
    ActionNotSupported {
        /// The action that was asked for.
        action: Action,
    },
    /// A one-time setting was set a second time.
    #[error("{what} is already set")]
    AlreadySet {
        /// What was already set.
        what: String,
    },
    /// The backend cannot run this guest operating system.
    #[error("backend {backend} cannot run {os} guests")]
    UnsupportedGuestOs {
        /// The guest OS that was asked for.
        os: GuestOs,
        /// The backend that refused.
        backend: String,
    },
    /// A guest OS name that the contract does not know.
    #[error("unknown guest OS {name:?} (known: linux, windows)")]
    UnknownGuestOs {
        /// The name that was given.
        name: String,
    },
    /// The operation is not valid in the VM's current lifecycle state.
    #[error("cannot {operation} while the VM is {state}")]
    InvalidState {
        /// The operation that was refused.
        operation: String,
        /// The state the VM was in.
        state: State,
    },
    /// An argument of the call is malformed; nothing was changed.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// Which argument (or field of it) is wrong.
        argument: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A configuration failed validation; every problem found is listed.
    #[error("invalid configuration: {}", ConfigProblem::join(problems))]
    InvalidConfig {
        /// Each bad field with the reason it was refused.
        problems: Vec<ConfigProblem>,
    },
    /// The named object does not exist (or has already been removed).
    #[error("{resource} {id} not found")]
    NotFound {
        /// The kind of object looked up.
        resource: Resource,
        /// Its identifier.
        id: String,
    },
    /// An object with this identifier exists already.
    #[error("{resource} {id} already exists")]
    AlreadyExists {
        /// The kind of object.
        resource: Resource,
        /// The identifier that is taken.
        id: String,
    },
    /// A limit of the backend or of a controller would be exceeded.
    #[error("{resource} limit reached: {limit}")]
    LimitReached {
        /// The resource whose limit was hit.
        resource: Resource,
        /// Which limit, in words (for example "4 controllers").
        limit: String,
    },
    /// No backend of that name is registered.
    #[error("no backend named {name:?} is registered (registered: {})", available.join(", "))]
    UnknownBackend {
        /// The name that was asked for.
        name: String,
        /// Names of the backends that are registered.
        available: Vec<String>,
    },
    /// The backend is registered but cannot run on this host (for example no
    /// `/dev/kvm`, or a `/dev/kvm` without hardware virtualization).
    #[error("backend {backend} is not available on this host: {reason}")]
    BackendUnavailable {
        /// The backend's registry name.
        backend: String,
        /// Why it cannot run here.
        reason: String,
    },
    /// The operation did not complete in time.
    #[error("{operation} did not complete within {after:?}")]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// A host I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the backend was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A backend-specific failure that fits no other variant.
    #[error("backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Shorthand for [`Error::NotSupported`].
    pub fn not_supported(resource: Resource, operation: Operation) -> Self {
        Error::NotSupported {
            resource,
            operation,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid_argument(argument: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            argument: argument.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(resource: Resource, id: impl Into<String>) -> Self {
        Error::NotFound {
            resource,
            id: id.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(resource: Resource, id: impl Into<String>) -> Self {
        Error::AlreadyExists {
            resource,
            id: id.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps any error as [`Error::Backend`].
    pub fn backend(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Backend(Box::new(source))
    }

    /// A short stable name of the variant, for logs, metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotSupported { .. } => "not_supported",
            Error::ActionNotSupported { .. } => "action_not_supported",
            Error::AlreadySet { .. } => "already_set",
            Error::UnsupportedGuestOs { .. } => "unsupported_guest_os",
            Error::UnknownGuestOs { .. } => "unknown_guest_os",
            Error::InvalidState { .. } => "invalid_state",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::LimitReached { .. } => "limit_reached",
            Error::UnknownBackend { .. } => "unknown_backend",
            Error::BackendUnavailable { .. } => "backend_unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Io { .. } => "io",
            Error::Backend(_) => "backend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_went_wrong() {
        let e = Error::not_supported(Resource::Scsi, Operation::Add);
        assert_eq!(
            e.to_string(),
            "add of scsi is not supported by this backend"
        );
        let e = Error::InvalidState {
            operation: "pause".into(),
            state: State::Stopped,
        };
        assert_eq!(e.to_string(), "cannot pause while the VM is stopped");
        let e = Error::UnknownBackend {
            name: "nope".into(),
            available: vec!["kvm".into(), "mock".into()],
        };
        assert!(e.to_string().contains("kvm, mock"));
        assert_eq!(e.kind(), "unknown_backend");
    }
}
