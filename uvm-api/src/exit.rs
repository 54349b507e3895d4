//! How and why a VM stopped.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a VM stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The guest powered itself off (ACPI S5 or equivalent), including a graceful stop
    /// that the guest honoured.
    Shutdown,
    /// The guest asked to reboot. The VM stops and reports it; it does not restart.
    Reboot,
    /// The host stopped the VM with [`crate::Uvm::stop`] (forced, or graceful that timed out).
    Killed,
    /// The virtual CPU could not go on: triple fault, hypervisor internal error.
    Crash,
    /// The guest kernel reported a panic.
    GuestPanic,
    /// The VM failed before the guest ran.
    StartFailed,
    /// The virtual machine monitor itself failed while the guest ran.
    VmmError,
    /// The backend cannot tell.
    Unknown,
}

impl StopReason {
    /// Every reason, in declaration order.
    pub const ALL: [StopReason; 8] = [
        StopReason::Shutdown,
        StopReason::Reboot,
        StopReason::Killed,
        StopReason::Crash,
        StopReason::GuestPanic,
        StopReason::StartFailed,
        StopReason::VmmError,
        StopReason::Unknown,
    ];

    /// Whether this exit was expected: asked for by the guest or by the host.
    ///
    /// [`crate::Uvm::exit_error`] is `Some` exactly when this is false.
    pub fn is_expected(self) -> bool {
        matches!(
            self,
            StopReason::Shutdown | StopReason::Reboot | StopReason::Killed
        )
    }

    /// The lower-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Shutdown => "shutdown",
            StopReason::Reboot => "reboot",
            StopReason::Killed => "killed",
            StopReason::Crash => "crash",
            StopReason::GuestPanic => "guest_panic",
            StopReason::StartFailed => "start_failed",
            StopReason::VmmError => "vmm_error",
            StopReason::Unknown => "unknown",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`crate::Uvm::wait`] returns: the reason and, where there is one, a detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Why the VM stopped.
    pub reason: StopReason,
    /// A human-readable detail (for example the KVM exit that crashed the guest).
    pub detail: Option<String>,
}

impl ExitStatus {
    /// An exit status without detail.
    pub fn new(reason: StopReason) -> Self {
        ExitStatus {
            reason,
            detail: None,
        }
    }

    /// An exit status with a detail.
    pub fn with_detail(reason: StopReason, detail: impl Into<String>) -> Self {
        ExitStatus {
            reason,
            detail: Some(detail.into()),
        }
    }

    /// The error to report for this exit, if it was unexpected.
    pub fn error(&self) -> Option<ExitError> {
        (!self.reason.is_expected()).then(|| ExitError {
            reason: self.reason,
            detail: self.detail.clone(),
        })
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} ({d})", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

/// An unexpected exit, as returned by [`crate::Uvm::exit_error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the VM stopped unexpectedly: {reason}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct ExitError {
    /// Why the VM stopped.
    pub reason: StopReason,
    /// A human-readable detail, if the backend has one.
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unexpected_exits_are_errors() {
        for r in StopReason::ALL {
            let status = ExitStatus::with_detail(r, "x");
            assert_eq!(status.error().is_some(), !r.is_expected(), "{r}");
        }
        let e = ExitStatus::with_detail(StopReason::Crash, "triple fault")
            .error()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "the VM stopped unexpectedly: crash: triple fault"
        );
    }
}
