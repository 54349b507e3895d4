//! Client-side failures, and how the agent's error kinds become typed
//! [`uvm_api::Error`]s.

use std::io;

use uvm_api::{Error, Resource};

use crate::protocol::{ErrorBody, ErrorKind};

/// A failure of the agent conversation that no closer [`uvm_api::Error`]
/// variant describes; it travels as [`uvm_api::Error::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent speaks another protocol version than this client.
    #[error("protocol version mismatch with the guest agent: {detail}")]
    VersionMismatch {
        /// What the agent said or sent.
        detail: String,
    },
    /// The agent sent something that is not a valid response to the request.
    #[error("malformed guest agent response to {op}: {reason}")]
    BadResponse {
        /// The operation that was asked.
        op: String,
        /// What is wrong with the response.
        reason: String,
    },
    /// The agent reported a failure with no closer typed error.
    #[error("guest agent {op} failed ({kind:?}): {message}")]
    Failed {
        /// The operation that failed.
        op: String,
        /// The agent's error kind.
        kind: ErrorKind,
        /// The agent's message.
        message: String,
    },
}

impl AgentError {
    /// Wraps this error as [`uvm_api::Error::Backend`].
    pub fn into_api(self) -> Error {
        Error::backend(self)
    }
}

/// What a request is about, to turn "not found" and "in use" into the
/// right typed errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    /// Nothing in particular: "not found" is an I/O error (a missing file).
    None,
    /// A contract resource (a share tag, a vsock port): "not found" is
    /// [`Error::NotFound`], "address in use" is [`Error::AlreadyExists`].
    Resource(Resource, String),
    /// An argument naming something (a device name): "not found" is
    /// [`Error::InvalidArgument`] on it.
    Argument(&'static str),
}

/// OS errors that mean "not allowed to write": permission, read-only.
fn is_permission(errno: i32) -> bool {
    matches!(errno, libc::EACCES | libc::EPERM | libc::EROFS)
}

/// Maps an agent error response to a typed error.
///
/// `not_found` becomes `NotFound`, `InvalidArgument` or `Io(NotFound)`
/// depending on `subject`; `invalid_argument` and `bad_request` become
/// `InvalidArgument`; an `io` error carrying an OS error number becomes
/// `Io` with that error's kind, except permission and read-only errors
/// (`PermissionDenied`) and "address in use" on a resource
/// (`AlreadyExists`); `unsupported_version` is a version mismatch; the
/// rest (`timeout`, `command_failed`, `unknown_op`, `io` without errno)
/// is [`Error::Backend`] with the agent's message.
pub(crate) fn agent_error(op: &str, body: ErrorBody, subject: &Subject) -> Error {
    let context = format!("guest agent {op}");
    let ErrorBody {
        kind,
        message,
        errno,
    } = body;
    match kind {
        ErrorKind::NotFound => match subject {
            Subject::Resource(resource, id) => Error::not_found(*resource, id.clone()),
            Subject::Argument(argument) => Error::invalid_argument(*argument, message),
            Subject::None => Error::io(context, io::Error::new(io::ErrorKind::NotFound, message)),
        },
        ErrorKind::InvalidArgument | ErrorKind::BadRequest => Error::invalid_argument(op, message),
        ErrorKind::UnsupportedVersion => AgentError::VersionMismatch { detail: message }.into_api(),
        ErrorKind::Io => match (errno, subject) {
            (Some(errno), _) if is_permission(errno) => Error::io(
                context,
                io::Error::new(io::ErrorKind::PermissionDenied, message),
            ),
            (Some(libc::EADDRINUSE), Subject::Resource(resource, id)) => {
                Error::already_exists(*resource, id.clone())
            }
            (Some(errno), _) => Error::io(
                context,
                io::Error::new(io::Error::from_raw_os_error(errno).kind(), message),
            ),
            (None, _) => AgentError::Failed {
                op: op.to_owned(),
                kind,
                message,
            }
            .into_api(),
        },
        ErrorKind::UnknownOp | ErrorKind::Timeout | ErrorKind::CommandFailed => {
            AgentError::Failed {
                op: op.to_owned(),
                kind,
                message,
            }
            .into_api()
        }
    }
}

/// An I/O failure of the connection to the agent.
pub(crate) fn connection_error(op: &str, source: io::Error) -> Error {
    Error::io(format!("guest agent connection ({op})"), source)
}

/// Whether a failure means the connection broke (so a fresh one may work).
pub(crate) fn is_broken_connection(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if matches!(
        source.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    ))
}

/// Whether a connect failure means "nobody listens yet" (the agent may
/// still be starting).
pub(crate) fn is_refused(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if matches!(
        source.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: ErrorKind, errno: Option<i32>) -> ErrorBody {
        ErrorBody::new(kind, "message").with_errno(errno)
    }

    fn io_kind(error: &Error) -> Option<io::ErrorKind> {
        match error {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    #[test]
    fn not_found_depends_on_the_subject() {
        let share = Subject::Resource(Resource::VirtioFs, "vfs1".into());
        let e = agent_error("list_dir", body(ErrorKind::NotFound, None), &share);
        assert!(
            matches!(e, Error::NotFound { resource: Resource::VirtioFs, ref id } if id == "vfs1")
        );
        let e = agent_error(
            "read",
            body(ErrorKind::NotFound, None),
            &Subject::Argument("name"),
        );
        assert!(matches!(e, Error::InvalidArgument { ref argument, .. } if argument == "name"));
        let e = agent_error("read_file", body(ErrorKind::NotFound, None), &Subject::None);
        assert_eq!(io_kind(&e), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn io_errors_use_the_errno() {
        for errno in [libc::EROFS, libc::EACCES, libc::EPERM] {
            let e = agent_error("write", body(ErrorKind::Io, Some(errno)), &Subject::None);
            assert_eq!(
                io_kind(&e),
                Some(io::ErrorKind::PermissionDenied),
                "errno {errno}"
            );
        }
        let e = agent_error(
            "vsock_dial",
            body(ErrorKind::Io, Some(libc::ECONNREFUSED)),
            &Subject::None,
        );
        assert_eq!(io_kind(&e), Some(io::ErrorKind::ConnectionRefused));
        let port = Subject::Resource(Resource::VmSocket, "6000".into());
        let e = agent_error(
            "vsock_echo",
            body(ErrorKind::Io, Some(libc::EADDRINUSE)),
            &port,
        );
        assert!(matches!(
            e,
            Error::AlreadyExists {
                resource: Resource::VmSocket,
                ..
            }
        ));
        let e = agent_error("write", body(ErrorKind::Io, None), &Subject::None);
        assert!(matches!(e, Error::Backend(_)));
    }

    #[test]
    fn other_kinds() {
        let e = agent_error(
            "read",
            body(ErrorKind::InvalidArgument, None),
            &Subject::None,
        );
        assert!(
            matches!(e, Error::InvalidArgument { ref argument, ref reason } if argument == "read" && reason == "message")
        );
        let e = agent_error("read", body(ErrorKind::BadRequest, None), &Subject::None);
        assert!(matches!(e, Error::InvalidArgument { .. }));
        for kind in [
            ErrorKind::UnsupportedVersion,
            ErrorKind::UnknownOp,
            ErrorKind::Timeout,
            ErrorKind::CommandFailed,
        ] {
            let e = agent_error("x", body(kind, None), &Subject::None);
            assert!(matches!(e, Error::Backend(_)), "{kind:?}");
            assert!(e.to_string().contains("message"));
        }
        assert!(is_broken_connection(&connection_error(
            "x",
            io::ErrorKind::UnexpectedEof.into()
        )));
        assert!(!is_broken_connection(&Error::invalid_argument("a", "b")));
        assert!(is_refused(&connection_error(
            "x",
            io::ErrorKind::ConnectionRefused.into()
        )));
    }
}
