//! `wait`, exit status and stop reasons: who stopped the VM, and everyone
//! waiting hears the same answer.

use std::time::Duration;

use uvm_api::{ExitStatus, GuestAction, State, StopMode, StopReason};

use super::support::{GRACEFUL, Vm, create, expect_state, in_state, probe};
use crate::ctx::Ctx;
use crate::step::{Must, Step, Want, bail, ensure, expect_any_err, expect_err, fail, skip};

/// How long `wait` may take once the VM has stopped ("returns at once").
const AT_ONCE: Duration = Duration::from_millis(500);

/// How long the guest may take to act on a trigger and stop.
const GUEST_EXIT: Duration = Duration::from_secs(10);

/// Waits for the exit, failing if it does not come within `limit`.
async fn wait_within(vm: &Vm, limit: Duration, after: &str) -> Step<ExitStatus> {
    match tokio::time::timeout(limit, vm.wait()).await {
        Ok(status) => Ok(status),
        Err(_) => Err(fail(format!(
            "after {after}: wait did not return within {limit:?} (state {})",
            vm.state()
        ))),
    }
}

/// Checks the exit reason, `exit_status`, `exit_error` and the state agree.
fn check_exit(vm: &Vm, status: &ExitStatus, want: StopReason, after: &str) -> Step {
    ensure!(
        status.reason == want,
        "after {after}: expected stop reason {want}, wait returned {status}"
    );
    expect_state(&**vm, State::Stopped, after)?;
    ensure!(
        vm.exit_status().as_ref() == Some(status),
        "after {after}: exit_status() is {:?} but wait returned {status:?}",
        vm.exit_status()
    );
    let error = vm.exit_error();
    if want.is_expected() {
        ensure!(
            error.is_none(),
            "after {after}: exit_error() is {error:?}; an expected exit ({want}) has none"
        );
    } else {
        match error {
            Some(e) if e.reason == want => {}
            other => bail!(
                "after {after}: exit_error() is {other:?}; expected an error with reason {want}"
            ),
        }
    }
    Ok(())
}

async fn guest_exit(ctx: Ctx, action: GuestAction, want: StopReason) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let p = probe(&*vm)?;
    let waiter = {
        let vm = vm.arc();
        tokio::spawn(async move { vm.wait().await })
    };
    p.trigger(action)
        .await
        .must(&format!("making the guest {action:?}"))?;
    let after = format!("the guest did {action:?}");
    let status = wait_within(&vm, GUEST_EXIT, &after).await?;
    check_exit(&vm, &status, want, &after)?;
    let early = tokio::time::timeout(AT_ONCE, waiter)
        .await
        .map_err(|_| {
            fail(format!(
                "after {after}: a waiter from before the exit was not woken"
            ))
        })?
        .map_err(|e| fail(format!("waiter task: {e}")))?;
    ensure!(
        early == status,
        "a waiter from before the exit got {early}, a later one {status}"
    );
    // A stop after the guest's own exit changes nothing.
    vm.stop(StopMode::Force)
        .await
        .must("stop after the guest exited")?;
    let again = vm.wait().await;
    ensure!(
        again == status,
        "stop after a guest {action:?} changed the exit status from {status} to {again}"
    );
    Ok(())
}

async fn poweroff(ctx: Ctx) -> Step {
    guest_exit(ctx, GuestAction::PowerOff, StopReason::Shutdown).await
}

/// A guest exit nobody waits for: `state()` alone must show it, and whoever
/// reads `Stopped` must already read the exit status. No `wait` and no `stop`
/// are called until the state reads `Stopped`.
async fn reboot(ctx: Ctx) -> Step {
    let action = GuestAction::Reboot;
    let want = StopReason::Reboot;
    let vm = in_state(&ctx, State::Running).await?;
    let p = probe(&*vm)?;
    p.trigger(action)
        .await
        .must(&format!("making the guest {action:?}"))?;
    let after = format!("the guest did {action:?} (nobody waiting)");
    let deadline = tokio::time::Instant::now() + GUEST_EXIT;
    loop {
        if vm.state() == State::Stopped {
            let status = vm.exit_status();
            ensure!(
                status.as_ref().map(|s| s.reason) == Some(want),
                "after {after}: state() reads stopped but exit_status() is {status:?}; whoever sees stopped must see the exit status ({want})"
            );
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "after {after}: state() still reads {} after {GUEST_EXIT:?}; the guest's exit must move the VM to stopped without anyone calling wait or stop",
            vm.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = wait_within(&vm, AT_ONCE, &after).await?;
    check_exit(&vm, &status, want, &after)?;
    vm.stop(StopMode::Force)
        .await
        .must("stop after the guest exited")?;
    let again = vm.wait().await;
    ensure!(
        again == status,
        "stop after a guest {action:?} changed the exit status from {status} to {again}"
    );
    Ok(())
}

async fn panic(ctx: Ctx) -> Step {
    guest_exit(ctx, GuestAction::Panic, StopReason::GuestPanic).await
}

async fn crash(ctx: Ctx) -> Step {
    guest_exit(ctx, GuestAction::Crash, StopReason::Crash).await
}

/// Polls `state()` from another task until it reads `Stopped` and returns
/// what `exit_status()` said at that moment (`None` if the poll timed out).
fn watch_stopped(vm: &Vm) -> tokio::task::JoinHandle<Option<Option<ExitStatus>>> {
    let vm = vm.arc();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + GUEST_EXIT;
        while tokio::time::Instant::now() < deadline {
            if vm.state() == State::Stopped {
                return Some(vm.exit_status());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    })
}

async fn force_stop_killed(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let watcher = watch_stopped(&vm);
    vm.stop(StopMode::Force).await.must("force stop")?;
    let status = wait_within(&vm, AT_ONCE, "a forced stop").await?;
    check_exit(&vm, &status, StopReason::Killed, "a forced stop")?;
    let seen = watcher
        .await
        .map_err(|e| fail(format!("state watcher task: {e}")))?;
    match seen {
        Some(Some(_)) => Ok(()),
        Some(None) => bail!(
            "during a forced stop another task read state() stopped while exit_status() was None; whoever sees stopped must see the exit status"
        ),
        None => bail!("during a forced stop another task never read state() stopped"),
    }
}

/// A start that fails before the guest runs (its kernel does not exist)
/// returns the error and ends the VM stopped with reason `start_failed`.
async fn failed_start(ctx: Ctx) -> Step {
    let mut config = ctx.config();
    config.guest_os = uvm_api::GuestOs::Linux;
    config.kernel = Some(ctx.scratch().join("no-such-kernel"));
    let vm = match ctx.backend().create(config).await {
        Ok(vm) => Vm::new(vm),
        Err(e) => {
            expect_any_err(
                "creating a VM whose kernel does not exist",
                Err::<(), _>(e),
                &[Want::InvalidArgument, Want::InvalidConfig, Want::Io],
            )?;
            return Err(skip(
                "the backend refuses a missing kernel at create, so no start can fail",
            ));
        }
    };
    let what = "start of a VM whose kernel does not exist";
    if vm.start().await.is_ok() {
        bail!("{what} succeeded");
    }
    expect_state(&*vm, State::Stopped, what)?;
    let status = wait_within(&vm, AT_ONCE, what).await?;
    check_exit(&vm, &status, StopReason::StartFailed, what)?;
    expect_err(
        &format!("start again after the {what} failed"),
        vm.start().await,
        Want::InvalidState(State::Stopped),
    )?;
    Ok(())
}

async fn graceful_stop_reason(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let timeout = Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    vm.stop(StopMode::Graceful { timeout })
        .await
        .must("graceful stop")?;
    let took = started.elapsed();
    let status = wait_within(&vm, AT_ONCE, "a graceful stop").await?;
    // Shutdown if the guest complied, which it did if the stop returned before the timeout.
    let want = if took < timeout {
        StopReason::Shutdown
    } else {
        StopReason::Killed
    };
    check_exit(
        &vm,
        &status,
        want,
        &format!("a graceful stop that took {took:?} of its {timeout:?}"),
    )
}

async fn stop_in_created_killed(ctx: Ctx) -> Step {
    for mode in [GRACEFUL, StopMode::Force] {
        let vm = create(&ctx).await?;
        vm.stop(mode).await.must("stop before start")?;
        let status = wait_within(&vm, AT_ONCE, "a stop before start").await?;
        check_exit(
            &vm,
            &status,
            StopReason::Killed,
            &format!("a {mode:?} stop before start"),
        )?;
    }
    Ok(())
}

async fn stop_while_paused_killed(ctx: Ctx) -> Step {
    // A paused guest cannot answer the power button: either mode kills it.
    for mode in [StopMode::Force, GRACEFUL] {
        let vm = in_state(&ctx, State::Paused).await?;
        let what = format!("a {mode:?} stop while paused");
        vm.stop(mode).await.must(&what)?;
        let status = wait_within(&vm, AT_ONCE, &what).await?;
        check_exit(&vm, &status, StopReason::Killed, &what)?;
    }
    Ok(())
}

async fn wait_after_exit_at_once(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Stopped).await?;
    let first = wait_within(&vm, AT_ONCE, "the VM stopped").await?;
    for round in 2..=5 {
        let again =
            wait_within(&vm, AT_ONCE, &format!("wait number {round} after the exit")).await?;
        ensure!(
            again == first,
            "wait number {round} after the exit returned {again}, the first {first}"
        );
    }
    Ok(())
}

async fn wait_blocks_while_running(ctx: Ctx) -> Step {
    for state in [State::Created, State::Running, State::Paused] {
        let vm = match in_state(&ctx, state).await {
            Ok(vm) => vm,
            Err(crate::outcome::Outcome::Skipped(_)) if state == State::Paused => continue,
            Err(other) => return Err(other),
        };
        let early = tokio::time::timeout(Duration::from_millis(200), vm.wait()).await;
        if let Ok(status) = early {
            bail!(
                "wait returned {status} while the VM was {state}; it must block until the VM stops"
            );
        }
        ensure!(
            vm.exit_status().is_none(),
            "exit_status() is {:?} while {state}",
            vm.exit_status()
        );
        ensure!(
            vm.exit_error().is_none(),
            "exit_error() is set while {state}"
        );
    }
    Ok(())
}

async fn concurrent_waiters(ctx: Ctx) -> Step {
    const WAITERS: usize = 8;
    let vm = create(&ctx).await?;
    let mut waiters = Vec::new();
    for _ in 0..WAITERS / 2 {
        let vm = vm.arc();
        waiters.push(tokio::spawn(async move { vm.wait().await }));
    }
    vm.start().await.must("start")?;
    for _ in WAITERS / 2..WAITERS {
        let vm = vm.arc();
        waiters.push(tokio::spawn(async move { vm.wait().await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(
        waiters.iter().all(|w| !w.is_finished()),
        "a waiter returned before the VM stopped"
    );
    vm.stop(StopMode::Force).await.must("force stop")?;
    let mut statuses = Vec::new();
    for (i, waiter) in waiters.into_iter().enumerate() {
        let status = tokio::time::timeout(AT_ONCE, waiter)
            .await
            .map_err(|_| fail(format!("waiter {i} was not woken by the stop")))?
            .map_err(|e| fail(format!("waiter {i}: {e}")))?;
        statuses.push(status);
    }
    let first = &statuses[0];
    ensure!(
        statuses.iter().all(|s| s == first),
        "{WAITERS} concurrent waiters got different statuses: {statuses:?}"
    );
    check_exit(&vm, first, StopReason::Killed, "a forced stop with waiters")
}

async fn guest_exit_wakes_waiters(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let p = probe(&*vm)?;
    let mut waiters = Vec::new();
    for _ in 0..6 {
        let vm = vm.arc();
        waiters.push(tokio::spawn(async move { vm.wait().await }));
    }
    p.trigger(GuestAction::Panic)
        .await
        .must("making the guest panic")?;
    for (i, waiter) in waiters.into_iter().enumerate() {
        let status = tokio::time::timeout(GUEST_EXIT, waiter)
            .await
            .map_err(|_| fail(format!("waiter {i} was not woken by the guest panic")))?
            .map_err(|e| fail(format!("waiter {i}: {e}")))?;
        ensure!(
            status.reason == StopReason::GuestPanic,
            "waiter {i} got {status}; expected guest_panic"
        );
    }
    Ok(())
}

super::check!(
    Exit,
    exit_guest_poweroff_is_shutdown,
    "a guest power-off stops the VM with reason shutdown, no exit error, and a later stop changes nothing",
    poweroff
);

super::check!(
    Exit,
    exit_guest_reboot_is_reboot,
    "a guest reboot stops the VM with reason reboot and no exit error; state() shows it with nobody waiting, the exit status with it",
    reboot
);

super::check!(
    Exit,
    exit_guest_panic_is_guest_panic,
    "a guest kernel panic stops the VM with reason guest_panic and an exit error",
    panic
);

super::check!(
    Exit,
    exit_guest_crash_is_crash,
    "a guest triple fault stops the VM with reason crash and an exit error",
    crash
);

super::check!(
    Exit,
    exit_force_stop_is_killed,
    "a forced stop reports reason killed and no exit error; another task that reads stopped reads the exit status too",
    force_stop_killed
);

super::check!(
    Exit,
    exit_failed_start_is_start_failed,
    "a start that fails before the guest runs returns the error and ends the VM stopped with reason start_failed and an exit error",
    failed_start
);

super::check!(
    Exit,
    exit_graceful_stop_reason,
    "a graceful stop reports shutdown if the guest complied in time, killed if the timeout ran out",
    graceful_stop_reason
);

super::check!(
    Exit,
    exit_stop_before_start_is_killed,
    "a stop before start reports killed",
    stop_in_created_killed
);

super::check!(
    Exit,
    exit_stop_while_paused_is_killed,
    "a stop of a paused VM, forced or graceful, reports killed",
    stop_while_paused_killed
);

super::check!(
    Exit,
    exit_wait_after_exit_returns_at_once,
    "after the exit, wait returns at once, the same status every time",
    wait_after_exit_at_once
);

super::check!(
    Exit,
    exit_wait_blocks_until_stopped,
    "wait blocks while the VM is created, running or paused, and there is no exit status",
    wait_blocks_while_running
);

super::check!(
    Exit,
    exit_concurrent_waiters_same_status,
    "several concurrent waiters, from before and after start, all get the same status",
    concurrent_waiters
);

super::check!(
    Exit,
    exit_guest_exit_wakes_every_waiter,
    "a guest panic wakes every waiter with reason guest_panic",
    guest_exit_wakes_waiters
);
