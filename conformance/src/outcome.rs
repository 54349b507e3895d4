//! What a check found ([`Outcome`]) and what it is about ([`Area`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    /// The backend did what the contract says, for a capability it claims
    /// (or for a promise every backend makes).
    Passed,
    /// The check is about a capability the backend does not claim, and all it
    /// could verify is the honest refusal (`NotSupported` or
    /// `ActionNotSupported`, nothing changed): not a failure, and not a pass
    /// either. The message says which capability and what was verified.
    Unclaimed(String),
    /// The backend did not: the message says what was expected and what happened.
    Failed(String),
    /// The check could not be exercised at all on this backend; the message says why.
    Skipped(String),
}

impl Outcome {
    /// Whether the check failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// Whether the check passed.
    pub fn is_passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// Whether the check ended unclaimed (an honest refusal, verified).
    pub fn is_unclaimed(&self) -> bool {
        matches!(self, Outcome::Unclaimed(_))
    }

    /// Whether the check was skipped.
    pub fn is_skipped(&self) -> bool {
        matches!(self, Outcome::Skipped(_))
    }

    /// `passed`, `unclaimed`, `failed` or `skipped`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Unclaimed(_) => "unclaimed",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }

    /// The unclaimed capability, failure message or skip reason.
    pub fn message(&self) -> Option<&str> {
        match self {
            Outcome::Passed => None,
            Outcome::Unclaimed(m) | Outcome::Failed(m) | Outcome::Skipped(m) => Some(m),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(m) => write!(f, "{}: {m}", self.status()),
            None => f.write_str(self.status()),
        }
    }
}

/// The part of the contract a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// The lifecycle state machine: every transition, valid and invalid.
    Lifecycle,
    /// `wait`, exit status and stop reasons.
    Exit,
    /// `stats` in every state.
    Stats,
    /// The SCSI manager.
    Scsi,
    /// The VPMem manager.
    Vpmem,
    /// The network manager.
    Network,
    /// The shared-folder manager (virtio-fs, 9p, VSMB).
    Shares,
    /// Host/guest sockets.
    Vsock,
    /// PCI device assignment.
    Pci,
    /// Memory updates.
    Memory,
    /// Processor limit updates.
    Processor,
    /// CPU group membership.
    CpuGroup,
    /// `supported` answers true exactly for what works.
    Truthfulness,
    /// Malformed arguments are refused and change nothing.
    BadInput,
    /// Concurrent callers.
    Concurrency,
    /// Nothing leaks: threads, file descriptors, tasks, images, removals.
    Cleanup,
}

impl Area {
    /// Every area, in report order.
    pub const ALL: [Area; 16] = [
        Area::Lifecycle,
        Area::Exit,
        Area::Stats,
        Area::Scsi,
        Area::Vpmem,
        Area::Network,
        Area::Shares,
        Area::Vsock,
        Area::Pci,
        Area::Memory,
        Area::Processor,
        Area::CpuGroup,
        Area::Truthfulness,
        Area::BadInput,
        Area::Concurrency,
        Area::Cleanup,
    ];

    /// The lower-case name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Lifecycle => "lifecycle",
            Area::Exit => "exit",
            Area::Stats => "stats",
            Area::Scsi => "scsi",
            Area::Vpmem => "vpmem",
            Area::Network => "network",
            Area::Shares => "shares",
            Area::Vsock => "vsock",
            Area::Pci => "pci",
            Area::Memory => "memory",
            Area::Processor => "processor",
            Area::CpuGroup => "cpu_group",
            Area::Truthfulness => "truthfulness",
            Area::BadInput => "bad_input",
            Area::Concurrency => "concurrency",
            Area::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An area name that is not one of [`Area::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown area {name:?} (known: {})", Area::ALL.map(Area::as_str).join(", "))]
pub struct UnknownArea {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Area {
    type Err = UnknownArea;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().replace('-', "_");
        Area::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| UnknownArea { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_parse_from_their_names() {
        for area in Area::ALL {
            assert_eq!(area.as_str().parse::<Area>().unwrap(), area);
        }
        assert_eq!("cpu-group".parse::<Area>().unwrap(), Area::CpuGroup);
        let err = "floppy".parse::<Area>().unwrap_err();
        assert!(err.to_string().contains("lifecycle"), "{err}");
    }

    #[test]
    fn outcome_serializes_with_a_status_tag() {
        let json = serde_json::to_string(&Outcome::Failed("x".into())).unwrap();
        assert_eq!(json, r#"{"status":"failed","message":"x"}"#);
        let json = serde_json::to_string(&Outcome::Passed).unwrap();
        assert_eq!(json, r#"{"status":"passed"}"#);
        let unclaimed = Outcome::Unclaimed("(pci, add) is not claimed".into());
        let json = serde_json::to_string(&unclaimed).unwrap();
        assert_eq!(
            json,
            r#"{"status":"unclaimed","message":"(pci, add) is not claimed"}"#
        );
        assert!(!unclaimed.is_failed() && !unclaimed.is_passed() && unclaimed.is_unclaimed());
        assert_eq!(unclaimed.message(), Some("(pci, add) is not claimed"));
    }
}
