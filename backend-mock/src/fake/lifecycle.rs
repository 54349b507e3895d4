//! Start, stop, pause and resume: the lifecycle of a fake VM (its state and
//! exit live in the core's [`uvm_api::ExitCell`]).

use tokio::time::Instant;
use tracing::info;
use uvm_api::{
    Action, Error, ExitStatus, Result, State, StopMode, StopReason, UvmConfig, validate,
};

use super::console;
use super::core::{Core, blocking};
use super::fault_point::FaultPoint;

impl Core {
    pub(crate) async fn start(&self) -> Result<()> {
        let config = {
            let mut m = self.lock();
            let state = self.state();
            state.check(Action::Start)?;
            if m.booting {
                // Another start is booting the guest right now.
                return Err(Error::InvalidState {
                    operation: Action::Start.as_str().to_owned(),
                    state,
                });
            }
            if let Err(e) = self.faults.take(FaultPoint::Start) {
                drop(m);
                self.exit(ExitStatus::with_detail(
                    StopReason::StartFailed,
                    e.to_string(),
                ));
                return Err(e);
            }
            m.booting = true;
            m.config.clone()
        };
        if let Err(e) = self.boot(config).await {
            // A stop during boot already decided the exit; otherwise the start failed.
            self.exit(ExitStatus::with_detail(
                StopReason::StartFailed,
                e.to_string(),
            ));
            return Err(e);
        }
        let mut m = self.lock();
        let state = self.state();
        if state != State::Created || !m.booting {
            return Err(Error::InvalidState {
                operation: Action::Start.as_str().to_owned(),
                state,
            });
        }
        m.booting = false;
        m.clock.start(Instant::now());
        m.count("starts");
        self.set_state(State::Running);
        info!(vm = %self.id, "VM running");
        Ok(())
    }

    /// What a VMM does before the guest runs: load the kernel, open the
    /// console, let the guest boot.
    async fn boot(&self, config: UvmConfig) -> Result<()> {
        let id = self.id.clone();
        blocking(move || {
            if let Some(kernel) = &config.kernel {
                validate::existing_absolute_path("kernel", kernel)?;
            }
            if let Some(initrd) = &config.initrd {
                validate::existing_absolute_path("initrd", initrd)?;
            }
            console::write(&config.console, &id, &console::boot_lines(&config))
        })
        .await?;
        let mut state = self.watch_state();
        tokio::select! {
            () = tokio::time::sleep(self.options.boot_delay) => Ok(()),
            _ = state.wait_for(|s| *s == State::Stopped) => Err(Error::InvalidState {
                operation: Action::Start.as_str().to_owned(),
                state: State::Stopped,
            }),
        }
    }

    pub(crate) async fn stop(&self, mode: StopMode) -> Result<()> {
        let state = {
            let _m = self.lock();
            let state = self.state();
            state.check(Action::Stop)?;
            if state == State::Stopped {
                return Ok(());
            }
            self.faults.take(FaultPoint::Stop)?;
            state
        };
        let killed = ExitStatus::new(StopReason::Killed);
        match (mode, state) {
            (StopMode::Graceful { timeout }, State::Running) => {
                if !self.faults.ignoring_power_button() {
                    // The guest powers off when asked; if it was paused meanwhile it cannot.
                    if !self.exit_if(ExitStatus::new(StopReason::Shutdown), |s| {
                        s == State::Running
                    }) {
                        self.exit(killed);
                    }
                    return Ok(());
                }
                let waited = tokio::time::timeout(timeout, self.wait()).await;
                if waited.is_err() {
                    info!(vm = %self.id, ?timeout, "guest ignored the power button; killing it");
                    self.exit(killed);
                }
            }
            // Force; or no guest yet (Created); or a paused guest, which cannot
            // act on the power button since its time does not advance.
            _ => {
                self.exit(killed);
            }
        }
        Ok(())
    }

    pub(crate) fn pause(&self) -> Result<()> {
        self.require_action(Action::Pause)?;
        let mut m = self.lock();
        let next = self.state().check(Action::Pause)?;
        self.faults.take(FaultPoint::Pause)?;
        m.clock.pause(Instant::now());
        m.count("pauses");
        self.set_state(next);
        info!(vm = %self.id, "VM paused");
        Ok(())
    }

    pub(crate) fn resume(&self) -> Result<()> {
        self.require_action(Action::Resume)?;
        let mut m = self.lock();
        let next = self.state().check(Action::Resume)?;
        self.faults.take(FaultPoint::Resume)?;
        m.clock.resume(Instant::now());
        m.count("resumes");
        self.set_state(next);
        info!(vm = %self.id, "VM resumed");
        Ok(())
    }
}
