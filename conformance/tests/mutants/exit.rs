//! Mutants of the exit area.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use uvm_api::{ExitStatus, Result, State, StopMode, StopReason, Uvm};

use crate::Mutant;
use crate::lie::Lie;

/// A start that failed before the guest ran is reported as a kill.
struct FailedStartReportedKilled;
fn killed_if_start_failed(mut status: ExitStatus) -> ExitStatus {
    if status.reason == StopReason::StartFailed {
        status.reason = StopReason::Killed;
    }
    status
}
#[async_trait]
impl Lie for FailedStartReportedKilled {
    async fn wait(&self, vm: &dyn Uvm) -> ExitStatus {
        killed_if_start_failed(vm.wait().await)
    }
    fn exit_status(&self, vm: &dyn Uvm) -> Option<ExitStatus> {
        vm.exit_status().map(killed_if_start_failed)
    }
}

/// A failed start returns its error but leaves the VM looking Created, with
/// no exit status, until the host stops it.
#[derive(Default)]
struct FailedStartLeavesCreated {
    failed: AtomicBool,
    stopped: AtomicBool,
}
impl FailedStartLeavesCreated {
    fn hiding(&self) -> bool {
        self.failed.load(Ordering::SeqCst) && !self.stopped.load(Ordering::SeqCst)
    }
}
#[async_trait]
impl Lie for FailedStartLeavesCreated {
    async fn start(&self, vm: &dyn Uvm) -> Result<()> {
        let result = vm.start().await;
        if result.is_err() && vm.state() == State::Stopped {
            self.failed.store(true, Ordering::SeqCst);
        }
        result
    }
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        self.stopped.store(true, Ordering::SeqCst);
        vm.stop(mode).await
    }
    fn state(&self, vm: &dyn Uvm) -> State {
        if self.hiding() {
            State::Created
        } else {
            vm.state()
        }
    }
    fn exit_status(&self, vm: &dyn Uvm) -> Option<ExitStatus> {
        if self.hiding() {
            None
        } else {
            vm.exit_status()
        }
    }
    async fn wait(&self, vm: &dyn Uvm) -> ExitStatus {
        while self.hiding() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        vm.wait().await
    }
}

/// `exit_status` stays `None` until someone has called `wait` or `stop` on
/// the VM, although `state` already reads Stopped.
#[derive(Default)]
struct ExitStatusOnlyAfterWait {
    asked: AtomicBool,
}
#[async_trait]
impl Lie for ExitStatusOnlyAfterWait {
    async fn wait(&self, vm: &dyn Uvm) -> ExitStatus {
        let status = vm.wait().await;
        self.asked.store(true, Ordering::SeqCst);
        status
    }
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        let result = vm.stop(mode).await;
        self.asked.store(true, Ordering::SeqCst);
        result
    }
    fn exit_status(&self, vm: &dyn Uvm) -> Option<ExitStatus> {
        if self.asked.load(Ordering::SeqCst) {
            vm.exit_status()
        } else {
            None
        }
    }
}

/// A lazy reaper: the exit of a guest that ran shows in `state` only once
/// someone has waited for it (or stopped the VM).
#[derive(Default)]
struct GuestExitSeenOnlyByWait {
    ran: AtomicBool,
    observed: AtomicBool,
}
#[async_trait]
impl Lie for GuestExitSeenOnlyByWait {
    async fn start(&self, vm: &dyn Uvm) -> Result<()> {
        vm.start().await?;
        self.ran.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn wait(&self, vm: &dyn Uvm) -> ExitStatus {
        let status = vm.wait().await;
        self.observed.store(true, Ordering::SeqCst);
        status
    }
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        let result = vm.stop(mode).await;
        self.observed.store(true, Ordering::SeqCst);
        result
    }
    fn state(&self, vm: &dyn Uvm) -> State {
        match vm.state() {
            State::Stopped
                if self.ran.load(Ordering::SeqCst) && !self.observed.load(Ordering::SeqCst) =>
            {
                State::Running
            }
            other => other,
        }
    }
}

/// A graceful stop of a paused VM resumes it first, so the guest powers off
/// and the exit reads Shutdown instead of Killed.
struct GracefulStopResumesPausedGuest;
#[async_trait]
impl Lie for GracefulStopResumesPausedGuest {
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        if matches!(mode, StopMode::Graceful { .. }) && vm.state() == State::Paused {
            vm.resume().await?;
        }
        vm.stop(mode).await
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "a failed start is reported as killed",
            promise: "exit.start_failure_is_start_failed",
            lie: || Box::new(FailedStartReportedKilled),
            caught_by: &["exit_failed_start_is_start_failed"],
            collateral: &[],
        },
        Mutant {
            name: "a failed start leaves the VM created",
            promise: "exit.start_failure_is_start_failed",
            lie: || Box::<FailedStartLeavesCreated>::default(),
            caught_by: &["exit_failed_start_is_start_failed"],
            collateral: &[],
        },
        Mutant {
            name: "exit status only after wait",
            promise: "exit.status_visible_with_stopped",
            lie: || Box::<ExitStatusOnlyAfterWait>::default(),
            caught_by: &["exit_guest_reboot_is_reboot"],
            collateral: &[],
        },
        Mutant {
            name: "guest exit seen only by wait",
            promise: "exit.guest_exit_moves_state",
            lie: || Box::<GuestExitSeenOnlyByWait>::default(),
            caught_by: &["exit_guest_reboot_is_reboot"],
            collateral: &[],
        },
        Mutant {
            name: "graceful stop resumes a paused guest",
            promise: "exit.stop_when_not_running_is_killed",
            lie: || Box::new(GracefulStopResumesPausedGuest),
            caught_by: &["exit_stop_while_paused_is_killed"],
            collateral: &[],
        },
    ]
}
