//! How checks are written: each step returns `Ok` to go on, or the outcome to stop with.

use uvm_api::{Action, Error, Operation, Resource, State};

use crate::outcome::Outcome;

/// A step of a check: `Err` carries the outcome the check ends with (usually a failure).
pub(crate) type Step<T = ()> = Result<T, Outcome>;

/// A failed outcome with `message`.
pub(crate) fn fail(message: impl Into<String>) -> Outcome {
    Outcome::Failed(message.into())
}

/// A skipped outcome with `reason`.
pub(crate) fn skip(reason: impl Into<String>) -> Outcome {
    Outcome::Skipped(reason.into())
}

/// Turns the end of a check body into its outcome.
pub(crate) fn finish(result: Step) -> Outcome {
    match result {
        Ok(()) => Outcome::Passed,
        Err(outcome) => outcome,
    }
}

/// Fails the check with a formatted message.
macro_rules! bail {
    ($($fmt:tt)+) => {
        return Err($crate::step::fail(format!($($fmt)+)))
    };
}
pub(crate) use bail;

/// Fails the check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $crate::step::bail!($($fmt)+);
        }
    };
}
pub(crate) use ensure;

/// Describes an error for a failure message: its kind and text.
pub(crate) fn describe(e: &Error) -> String {
    format!("{} error ({e})", e.kind())
}

/// Turns an unexpected backend error into a failure naming the step.
pub(crate) trait Must<T> {
    /// `Ok` as is; an error fails the check with "`what`: expected success, got ...".
    fn must(self, what: &str) -> Step<T>;
}

impl<T> Must<T> for uvm_api::Result<T> {
    fn must(self, what: &str) -> Step<T> {
        self.map_err(|e| fail(format!("{what}: expected success, got {}", describe(&e))))
    }
}

/// An error a step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// `NotSupported` for exactly this pair.
    NotSupported(Resource, Operation),
    /// `ActionNotSupported` for this action.
    ActionNotSupported(Action),
    /// `InvalidState` naming this state.
    InvalidState(State),
    /// `InvalidArgument`.
    InvalidArgument,
    /// `NotFound` for this resource.
    NotFound(Resource),
    /// `AlreadyExists` for this resource.
    AlreadyExists(Resource),
    /// `AlreadySet`.
    AlreadySet,
    /// `LimitReached`.
    LimitReached,
    /// `InvalidConfig`.
    InvalidConfig,
    /// `UnsupportedGuestOs`.
    UnsupportedGuestOs,
    /// `Io`.
    Io,
}

impl Want {
    /// Whether `e` is this error.
    pub(crate) fn matches(self, e: &Error) -> bool {
        match (self, e) {
            (
                Want::NotSupported(r, op),
                Error::NotSupported {
                    resource,
                    operation,
                },
            ) => *resource == r && *operation == op,
            (Want::ActionNotSupported(a), Error::ActionNotSupported { action }) => *action == a,
            (Want::InvalidState(s), Error::InvalidState { state, .. }) => *state == s,
            (Want::InvalidArgument, Error::InvalidArgument { .. })
            | (Want::AlreadySet, Error::AlreadySet { .. })
            | (Want::LimitReached, Error::LimitReached { .. })
            | (Want::InvalidConfig, Error::InvalidConfig { .. })
            | (Want::UnsupportedGuestOs, Error::UnsupportedGuestOs { .. })
            | (Want::Io, Error::Io { .. }) => true,
            (Want::NotFound(r), Error::NotFound { resource, .. }) => *resource == r,
            (Want::AlreadyExists(r), Error::AlreadyExists { resource, .. }) => *resource == r,
            _ => false,
        }
    }

    /// How the expected error is named in messages.
    pub(crate) fn name(self) -> String {
        match self {
            Want::NotSupported(r, op) => format!("NotSupported {{ {r}, {op} }}"),
            Want::ActionNotSupported(a) => format!("ActionNotSupported {{ {a} }}"),
            Want::InvalidState(s) => format!("InvalidState {{ state: {s} }}"),
            Want::InvalidArgument => "InvalidArgument".into(),
            Want::NotFound(r) => format!("NotFound {{ {r} }}"),
            Want::AlreadyExists(r) => format!("AlreadyExists {{ {r} }}"),
            Want::AlreadySet => "AlreadySet".into(),
            Want::LimitReached => "LimitReached".into(),
            Want::InvalidConfig => "InvalidConfig".into(),
            Want::UnsupportedGuestOs => "UnsupportedGuestOs".into(),
            Want::Io => "Io".into(),
        }
    }
}

/// Expects `result` to be the error `want`; returns the error for further checks.
pub(crate) fn expect_err<T>(what: &str, result: uvm_api::Result<T>, want: Want) -> Step<Error> {
    expect_any_err(what, result, &[want])
}

/// Expects `result` to be one of the errors `wants`.
pub(crate) fn expect_any_err<T>(
    what: &str,
    result: uvm_api::Result<T>,
    wants: &[Want],
) -> Step<Error> {
    let expected = wants
        .iter()
        .map(|w| w.name())
        .collect::<Vec<_>>()
        .join(" or ");
    match result {
        Ok(_) => Err(fail(format!(
            "{what}: expected {expected}, but the call succeeded"
        ))),
        Err(e) if wants.iter().any(|w| w.matches(&e)) => Ok(e),
        Err(e) => Err(fail(format!(
            "{what}: expected {expected}, got {}",
            describe(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_name_both_sides() {
        let got: uvm_api::Result<()> = Err(Error::InvalidState {
            operation: "pause".into(),
            state: State::Created,
        });
        let out = expect_err("pause in created", got, Want::InvalidState(State::Running));
        let msg = format!("{:?}", out.unwrap_err());
        assert!(
            msg.contains("expected InvalidState { state: running }"),
            "{msg}"
        );
        assert!(msg.contains("invalid_state error"), "{msg}");
        let ok: uvm_api::Result<()> = Ok(());
        let out = expect_err("x", ok, Want::InvalidArgument).unwrap_err();
        assert!(out.message().unwrap().contains("succeeded"));
        let ns: uvm_api::Result<()> = Err(Error::not_supported(Resource::Scsi, Operation::Add));
        assert!(
            expect_err(
                "x",
                ns,
                Want::NotSupported(Resource::Scsi, Operation::Remove)
            )
            .is_err()
        );
    }
}
