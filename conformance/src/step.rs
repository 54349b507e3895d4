//! How checks are written: each step returns `Ok` to go on, or the outcome to stop with.

use uvm_api::{Action, Error, Operation, Resource, State};

use crate::capability::Capability;
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

/// An unclaimed outcome: the backend does not claim `capabilities`, and the
/// check verified their honest refusal (the first one's kind of refusal).
pub(crate) fn unclaimed(capabilities: &[Capability]) -> Outcome {
    let names = capabilities
        .iter()
        .map(Capability::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    let refusal = capabilities
        .first()
        .map_or("nothing to call", |c| c.refusal());
    let (is, its) = if capabilities.len() > 1 {
        ("are", "their")
    } else {
        ("is", "its")
    };
    Outcome::Unclaimed(format!(
        "{names} {is} not claimed; verified {its} honest refusal: {refusal}"
    ))
}

/// The end of a check that verified either a claimed capability's behaviour
/// (`claimed`: passed) or only the honest refusal of `capabilities` (unclaimed).
pub(crate) fn verdict(claimed: bool, capabilities: &[Capability]) -> Step {
    if claimed {
        Ok(())
    } else {
        Err(unclaimed(capabilities))
    }
}

/// The parts of a check (one per state, per kind of device, per call) that
/// each end passed or unclaimed, gathered into one end: passed if any part
/// proved a claimed capability, unclaimed if every part only verified an
/// honest refusal.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    proved: bool,
    unclaimed: Vec<String>,
}

impl Parts {
    /// Counts the end of one part; a failure or a skip ends the check.
    pub(crate) fn part(&mut self, end: Step) -> Step {
        match end {
            Ok(()) | Err(Outcome::Passed) => self.proved = true,
            Err(Outcome::Unclaimed(m)) => {
                if !self.unclaimed.contains(&m) {
                    self.unclaimed.push(m);
                }
            }
            Err(other) => return Err(other),
        }
        Ok(())
    }

    /// Whether no part has been counted.
    pub(crate) fn is_empty(&self) -> bool {
        !self.proved && self.unclaimed.is_empty()
    }

    /// The end of the check: passed if any part proved something or none
    /// was counted, unclaimed if every part ended unclaimed.
    pub(crate) fn end(self) -> Step {
        if self.proved || self.unclaimed.is_empty() {
            Ok(())
        } else {
            Err(Outcome::Unclaimed(self.unclaimed.join("; ")))
        }
    }
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
    fn unclaimed_names_the_capability_and_the_verified_refusal() {
        let one = unclaimed(&[Capability::Pair(Resource::Pci, Operation::Add)]);
        assert_eq!(
            one.message(),
            Some(
                "(pci, add) is not claimed; verified its honest refusal: NotSupported, nothing changed"
            )
        );
        let two = unclaimed(&[
            Capability::Pair(Resource::Scsi, Operation::Add),
            Capability::Pair(Resource::Scsi, Operation::Remove),
        ]);
        assert!(
            two.message()
                .is_some_and(|m| m.starts_with("(scsi, add) and (scsi, remove) are not claimed")),
            "{two}"
        );
        assert_eq!(verdict(true, &[]), Ok(()));
        assert!(
            verdict(false, &[Capability::Restore])
                .unwrap_err()
                .is_unclaimed()
        );
    }

    #[test]
    fn parts_pass_if_any_part_proved_something() {
        let pci = || {
            Err(unclaimed(&[Capability::Pair(
                Resource::Pci,
                Operation::Add,
            )]))
        };
        let mut parts = Parts::default();
        assert!(parts.is_empty());
        parts.part(pci()).unwrap();
        parts.part(pci()).unwrap();
        assert!(!parts.is_empty());
        let end = parts.end().unwrap_err();
        assert!(end.is_unclaimed());
        assert_eq!(
            end.message().map(|m| m.matches("(pci, add)").count()),
            Some(1)
        );

        let mut parts = Parts::default();
        parts.part(pci()).unwrap();
        parts.part(Ok(())).unwrap();
        assert_eq!(parts.end(), Ok(()));

        let mut parts = Parts::default();
        assert!(parts.part(Err(fail("broken"))).unwrap_err().is_failed());
        assert!(parts.part(Err(skip("no probe"))).unwrap_err().is_skipped());
    }

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
