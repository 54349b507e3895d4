//! The lifecycle state machine: every transition of the table in the
//! `uvm-api` docs, valid and invalid, with nothing changed by a refusal.

use std::time::Duration;

use uvm_api::{Action, Operation, Resource, State, StopMode, StopReason, Uvm};

use super::device::{DeviceKind, Spec, add_claimed, claims, wait_seen};
use super::guest::{GuestSnapshot, snapshot};
use super::network::NicKind;
use super::ops::every_call;
use super::scsi::ScsiKind;
use super::support::{
    Before, GRACEFUL, create, eventually, expect_state, in_state, need_pause, reach,
};
use crate::capability::{Capability, OPTIONAL_ACTIONS};
use crate::ctx::Ctx;
use crate::step::{Must, Step, Want, bail, ensure, expect_err, skip, unclaimed, verdict};

/// Performs `action` (start, stop, pause, resume or save) on `vm`.
pub(crate) async fn act(ctx: &Ctx, vm: &dyn Uvm, action: Action) -> uvm_api::Result<()> {
    match action {
        Action::Start => vm.start().await,
        Action::Stop => vm.stop(StopMode::Force).await,
        Action::Pause => vm.pause().await,
        Action::Resume => vm.resume().await,
        Action::Save => vm.save(&ctx.scratch().join("snapshot")).await,
        other => Err(uvm_api::Error::invalid_argument(
            "action",
            format!("conformance suite bug: {other} is not a lifecycle call"),
        )),
    }
}

/// `action` in `state` is refused: `InvalidState` naming the state (or
/// `ActionNotSupported` if the backend lacks the action), and nothing changes.
async fn refused_in(ctx: &Ctx, action: Action, state: State) -> Step {
    let vm = create(ctx).await?;
    reach(&*vm, state).await?;
    let before = Before::take(&*vm).await?;
    let what = format!("{action} while {state}");
    let claimed = !OPTIONAL_ACTIONS.contains(&action) || vm.supports_action(action);
    let want = if claimed {
        Want::InvalidState(state)
    } else {
        Want::ActionNotSupported(action)
    };
    expect_err(&what, act(ctx, &*vm, action).await, want)?;
    before.unchanged(&*vm, &what).await?;
    if action == Action::Save {
        let dest = ctx.scratch().join("snapshot");
        ensure!(
            !dest.exists(),
            "after {what}: the refused save wrote {}",
            dest.display()
        );
    }
    ensure!(
        vm.exit_status().is_none() || state == State::Stopped,
        "after {what}: the VM reports an exit status although it did not stop"
    );
    verdict(claimed, &[Capability::Action(action)])
}

macro_rules! refusal {
    ($name:ident, $action:ident, $state:ident) => {
        async fn $name(ctx: Ctx) -> Step {
            refused_in(&ctx, Action::$action, State::$state).await
        }
    };
}

refusal!(start_running, Start, Running);
refusal!(start_paused, Start, Paused);
refusal!(start_stopped, Start, Stopped);
refusal!(pause_created, Pause, Created);
refusal!(pause_paused, Pause, Paused);
refusal!(pause_stopped, Pause, Stopped);
refusal!(resume_created, Resume, Created);
refusal!(resume_running, Resume, Running);
refusal!(resume_stopped, Resume, Stopped);
refusal!(save_created, Save, Created);
refusal!(save_running, Save, Running);
refusal!(save_stopped, Save, Stopped);

async fn new_vm_is_created(ctx: Ctx) -> Step {
    let config = ctx.config();
    let id = config.id.clone();
    let vm = super::support::create_with(&ctx, config).await?;
    expect_state(&*vm, State::Created, "create")?;
    ensure!(
        vm.id() == id,
        "the VM's id is {:?}; expected the config's id {id:?}",
        vm.id()
    );
    ensure!(
        vm.exit_status().is_none(),
        "a new VM reports an exit status: {:?}",
        vm.exit_status()
    );
    ensure!(vm.exit_error().is_none(), "a new VM reports an exit error");
    ensure!(
        vm.supports_action(Action::Start) && vm.supports_action(Action::Stop),
        "supports_action must be true for start and stop (every backend can)"
    );
    Ok(())
}

async fn start_from_created(ctx: Ctx) -> Step {
    // The serial console goes to a file the VM creates.
    let console = ctx.scratch().join("console.log");
    let mut config = ctx.config();
    config.console = uvm_api::ConsoleSink::File(console.clone());
    let vm = super::support::create_with(&ctx, config).await?;
    vm.start().await.must("start from created")?;
    expect_state(&*vm, State::Running, "start")?;
    ensure!(
        console.exists(),
        "the VM started with its console going to file {}, which does not exist",
        console.display()
    );
    ensure!(
        vm.exit_status().is_none(),
        "a running VM reports an exit status"
    );
    if let Some(probe) = vm.guest_probe() {
        probe
            .uptime()
            .await
            .must("asking the started guest its uptime")?;
    }
    Ok(())
}

async fn pause_from_running(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    if !vm.supports_action(Action::Pause) {
        let before = Before::take(&*vm).await?;
        expect_err(
            "pause (supports_action(pause) is false)",
            vm.pause().await,
            Want::ActionNotSupported(Action::Pause),
        )?;
        before.unchanged(&*vm, "a refused pause").await?;
        return Err(unclaimed(&[Capability::Action(Action::Pause)]));
    }
    vm.pause().await.must("pause while running")?;
    expect_state(&*vm, State::Paused, "pause")
}

async fn resume_from_paused(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Paused).await?;
    if !vm.supports_action(Action::Resume) {
        expect_err(
            "resume (supports_action(resume) is false)",
            vm.resume().await,
            Want::ActionNotSupported(Action::Resume),
        )?;
        expect_state(&*vm, State::Paused, "a refused resume")?;
        return Err(unclaimed(&[Capability::Action(Action::Resume)]));
    }
    vm.resume().await.must("resume while paused")?;
    expect_state(&*vm, State::Running, "resume")?;
    if let Some(probe) = vm.guest_probe() {
        probe
            .uptime()
            .await
            .must("asking the resumed guest its uptime")?;
    }
    Ok(())
}

async fn save_when_paused(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Paused).await?;
    let dest = ctx.scratch().join("snapshot");
    if !vm.supports_action(Action::Save) {
        expect_err(
            "save (supports_action(save) is false)",
            vm.save(&dest).await,
            Want::ActionNotSupported(Action::Save),
        )?;
        ensure!(!dest.exists(), "a refused save wrote {}", dest.display());
        expect_state(&*vm, State::Paused, "a refused save")?;
        return Err(unclaimed(&[Capability::Action(Action::Save)]));
    }
    vm.save(&dest).await.must("save while paused")?;
    expect_state(&*vm, State::Paused, "save")?;
    ensure!(
        dest.exists(),
        "save returned Ok but wrote nothing at {}",
        dest.display()
    );
    if vm.supports_action(Action::Resume) {
        vm.resume().await.must("resume after a save")?;
        expect_state(&*vm, State::Running, "resume after a save")?;
    }
    Ok(())
}

/// The devices a VM to be saved gets: disk 1 and NIC 1 before start, disk 2
/// hot-added once it runs (each where its add is claimed).
fn saved_devices(ctx: &Ctx) -> Step<[(&'static dyn DeviceKind, Spec, bool); 3]> {
    Ok([
        (
            &ScsiKind as &dyn DeviceKind,
            ScsiKind.fixture(ctx, 1)?,
            false,
        ),
        (&NicKind, NicKind.fixture(ctx, 1)?, false),
        (&ScsiKind, ScsiKind.fixture(ctx, 2)?, true),
    ])
}

/// Gives `vm` the devices of [`saved_devices`], starts it, and returns what
/// its guest sees once every device shows (`None` without a probe).
async fn run_with_devices(ctx: &Ctx, vm: &dyn Uvm) -> Step<Option<GuestSnapshot>> {
    let devices = saved_devices(ctx)?;
    for hot in [false, true] {
        if hot {
            vm.start().await.must("start")?;
        }
        for (kind, spec, _) in devices.iter().filter(|(_, _, h)| *h == hot) {
            if claims(*kind, vm, Operation::Add)? {
                kind.prepare(vm).await?;
                add_claimed(*kind, vm, spec, "adding a device to the VM to be saved").await?;
            }
        }
    }
    let Some(probe) = vm.guest_probe() else {
        return Ok(None);
    };
    for (kind, spec, _) in &devices {
        if claims(*kind, vm, Operation::Add)? && kind.observable() {
            // A device that never shows is the failure of a check about
            // adding it; this one then has nothing to compare.
            wait_seen(ctx, *kind, probe, spec, "adding it to the VM to be saved")
                .await
                .map_err(|o| {
                    skip(format!(
                        "the guest of the VM to be saved never showed its devices, so there is nothing to compare after restore ({})",
                        o.message().unwrap_or_default()
                    ))
                })?;
        }
    }
    Ok(Some(snapshot(probe).await?))
}

async fn restore_snapshot(ctx: Ctx) -> Step {
    let backend = ctx.backend().clone();
    let dest = ctx.scratch().join("snapshot");
    let vm = create(&ctx).await?;
    let can_save = vm.supports_action(Action::Save) && vm.supports_action(Action::Pause);
    let mut saved_view = None;
    if can_save {
        saved_view = run_with_devices(&ctx, &*vm).await?;
        vm.pause().await.must("pause")?;
        vm.save(&dest).await.must("save while paused")?;
        vm.stop(StopMode::Force).await.must("stop the saved VM")?;
    }
    let restored = backend.restore(&dest).await;
    if !backend.capabilities().restore {
        expect_err(
            "restore (the backend's capabilities say restore: false)",
            restored.map(|_| ()),
            Want::ActionNotSupported(Action::Save),
        )?;
        return Err(unclaimed(&[Capability::Restore]));
    }
    if !can_save {
        ensure!(
            restored.is_err(),
            "restoring from {} (nothing was saved there) succeeded",
            dest.display()
        );
        return Err(skip(
            "the backend can restore but not save (or pause), so there is no snapshot to restore",
        ));
    }
    let restored = super::support::Vm::new(restored.must("restore from the saved snapshot")?);
    expect_state(&*restored, State::Paused, "restore")?;
    if restored.supports_action(Action::Resume) {
        restored.resume().await.must("resume the restored VM")?;
        expect_state(&*restored, State::Running, "resume after restore")?;
        // The restored VM is the saved one: its guest sees the same devices.
        if let (Some(before), Some(probe)) = (&saved_view, restored.guest_probe()) {
            let limit = ctx.settings().guest_timeout;
            let (same, now) = eventually(limit, || async {
                let now = snapshot(probe).await?;
                Ok((&now == before, now))
            })
            .await?;
            ensure!(
                same,
                "the restored VM's guest does not see what the saved one saw (saved: {before}; restored: {now})"
            );
        }
    }
    restored
        .stop(StopMode::Force)
        .await
        .must("stop the restored VM")?;
    Ok(())
}

async fn stop_from(ctx: &Ctx, state: State, mode: StopMode) -> Step {
    let vm = in_state(ctx, state).await?;
    vm.stop(mode).await.must(&format!("stop while {state}"))?;
    expect_state(&*vm, State::Stopped, &format!("stop while {state}"))?;
    ensure!(
        vm.exit_status().is_some(),
        "after stop while {state}: the VM reports no exit status"
    );
    Ok(())
}

/// How long a graceful stop of a VM whose guest is not running may take: it
/// stops the VM at once, without asking the guest or waiting out the timeout.
const IDLE_STOP: Duration = Duration::from_secs(5);

/// A graceful stop (10 s timeout) of a VM in `state` (`Created` or `Paused`)
/// returns well before its timeout.
async fn graceful_stop_at_once(ctx: &Ctx, state: State) -> Step {
    let vm = in_state(ctx, state).await?;
    let what = format!("a graceful stop while {state}");
    let started = tokio::time::Instant::now();
    vm.stop(GRACEFUL).await.must(&what)?;
    let took = started.elapsed();
    expect_state(&*vm, State::Stopped, &what)?;
    ensure!(
        took < IDLE_STOP,
        "{what} took {took:?} of its {GRACEFUL:?}; with no running guest to ask, it must stop the VM at once"
    );
    Ok(())
}

async fn stop_from_created(ctx: Ctx) -> Step {
    stop_from(&ctx, State::Created, StopMode::Force).await?;
    graceful_stop_at_once(&ctx, State::Created).await
}

async fn stop_from_running(ctx: Ctx) -> Step {
    stop_from(&ctx, State::Running, GRACEFUL).await?;
    stop_from(&ctx, State::Running, StopMode::Force).await
}

async fn stop_while_paused(ctx: Ctx) -> Step {
    stop_from(&ctx, State::Paused, StopMode::Force).await?;
    graceful_stop_at_once(&ctx, State::Paused).await
}

async fn stop_when_stopped(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Stopped).await?;
    let status = vm.exit_status();
    vm.stop(StopMode::Force)
        .await
        .must("force stop of a stopped VM")?;
    vm.stop(GRACEFUL)
        .await
        .must("graceful stop of a stopped VM")?;
    expect_state(&*vm, State::Stopped, "stopping a stopped VM")?;
    ensure!(
        vm.exit_status() == status,
        "stopping a stopped VM changed its exit status from {status:?} to {:?}",
        vm.exit_status()
    );
    Ok(())
}

async fn pause_resume_repeatedly(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    need_pause(&*vm)?;
    if !vm.supports_action(Action::Resume) {
        return Err(skip("the backend cannot resume"));
    }
    for round in 1..=10 {
        vm.pause().await.must(&format!("pause number {round}"))?;
        expect_state(&*vm, State::Paused, &format!("pause number {round}"))?;
        vm.resume().await.must(&format!("resume number {round}"))?;
        expect_state(&*vm, State::Running, &format!("resume number {round}"))?;
    }
    if let Some(probe) = vm.guest_probe() {
        probe
            .uptime()
            .await
            .must("asking the guest its uptime after ten pauses")?;
    }
    vm.stop(StopMode::Force).await.must("stop")?;
    Ok(())
}

async fn guest_time_stops_while_paused(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    need_pause(&*vm)?;
    if !vm.supports_action(Action::Resume) {
        return Err(skip(
            "the backend cannot resume, so guest time cannot be read after a pause",
        ));
    }
    let probe = super::support::probe(&*vm)?;
    let paused_for = Duration::from_millis(600);
    let t0 = tokio::time::Instant::now();
    let before = probe.uptime().await.must("guest uptime before the pause")?;
    vm.pause().await.must("pause")?;
    let t1 = tokio::time::Instant::now();
    tokio::time::sleep(paused_for).await;
    let t2 = tokio::time::Instant::now();
    vm.resume().await.must("resume")?;
    let after = probe.uptime().await.must("guest uptime after the pause")?;
    let t3 = tokio::time::Instant::now();
    let advanced = after.saturating_sub(before);
    // The guest may count the time it ran around the pause, not the pause itself.
    let ran = (t1 - t0) + (t3 - t2);
    let slack = Duration::from_millis(100);
    ensure!(
        advanced <= ran + slack,
        "guest uptime advanced {advanced:?} across a {:?} pause, but the guest ran only {ran:?} around it; guest time must not advance while paused",
        t2 - t1
    );
    Ok(())
}

async fn every_call_on_stopped(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Stopped).await?;
    for a in [Action::Start, Action::Pause, Action::Resume, Action::Save] {
        let want = if matches!(a, Action::Start) || vm.supports_action(a) {
            Want::InvalidState(State::Stopped)
        } else {
            Want::ActionNotSupported(a)
        };
        expect_err(
            &format!("{a} on a stopped VM"),
            act(&ctx, &*vm, a).await,
            want,
        )?;
    }
    for call in every_call(&ctx, &*vm).await? {
        check_call(&*vm, call, State::Stopped)?;
    }
    for call in malformed_calls(&ctx, &*vm).await? {
        check_call(&*vm, call, State::Stopped)?;
    }
    expect_state(&*vm, State::Stopped, "every call on a stopped VM")?;
    let status = vm.wait().await;
    ensure!(
        status.reason == StopReason::Killed,
        "refused calls changed the exit reason to {status}"
    );
    Ok(())
}

/// Add calls with malformed arguments (a relative disk path, LUN 64, a NIC
/// id with a space, a relative VPMem path): the state is checked before the
/// arguments, so where the table forbids adds they give InvalidState too.
async fn malformed_calls(ctx: &Ctx, vm: &dyn Uvm) -> Step<Vec<super::ops::Call>> {
    use super::ops::Call;
    let mut calls = Vec::new();
    let mut call = |what: &str, resource, result: Option<uvm_api::Result<()>>| {
        calls.push(Call {
            what: what.to_owned(),
            resource,
            operation: Operation::Add,
            result,
        });
    };
    if let Spec::Scsi(mut d) = ScsiKind.fixture(ctx, 1)? {
        d.path = "disk.img".into();
        let scsi = vm.scsi();
        let relative = match scsi {
            Some(m) => Some(m.add_disk(d.clone()).await),
            None => None,
        };
        call(
            "scsi add_disk(0:1) with a relative path",
            Resource::Scsi,
            relative,
        );
        d.lun = uvm_api::config::MAX_LUNS_PER_CONTROLLER;
        let high = match scsi {
            Some(m) => Some(m.add_disk(d).await),
            None => None,
        };
        call("scsi add_disk at LUN 64", Resource::Scsi, high);
    }
    if let Spec::Nic(mut n) = NicKind.fixture(ctx, 1)? {
        n.id = "bad nic".into();
        let result = match vm.network() {
            Some(m) => Some(m.add_nic(n).await),
            None => None,
        };
        call(
            "network add_nic with the id \"bad nic\"",
            Resource::Network,
            result,
        );
    }
    if let Spec::Vpmem(mut d) = super::vpmem::VpmemKind.fixture(ctx, 1)? {
        d.path = "layer.img".into();
        let result = match vm.vpmem() {
            Some(m) => Some(m.add_device(d).await),
            None => None,
        };
        call(
            "vpmem add_device(1) with a relative path",
            Resource::VPMem,
            result,
        );
    }
    Ok(calls)
}

/// One manager call in `state`: refused per the table (listen is allowed while paused).
fn check_call(vm: &dyn Uvm, call: super::ops::Call, state: State) -> Step {
    let claimed = vm.supported(call.resource, call.operation);
    let what = format!("{} while {state}", call.what);
    match call.result {
        None if claimed => bail!(
            "supported({}, {}) is true but the VM has no manager for it",
            call.resource,
            call.operation
        ),
        None => Ok(()),
        Some(result) if !claimed => expect_err(
            &what,
            result,
            Want::NotSupported(call.resource, call.operation),
        )
        .map(|_| ()),
        Some(result) if state == State::Paused && call.what.contains("listen") => {
            result.must(&what)
        }
        Some(result) => expect_err(&what, result, Want::InvalidState(state)).map(|_| ()),
    }
}

async fn every_call_while_paused(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Paused).await?;
    let before = Before::take(&*vm).await?;
    for call in every_call(&ctx, &*vm).await? {
        check_call(&*vm, call, State::Paused)?;
    }
    for call in malformed_calls(&ctx, &*vm).await? {
        check_call(&*vm, call, State::Paused)?;
    }
    before
        .unchanged(&*vm, "every manager call while paused")
        .await?;
    Ok(())
}

super::check!(
    Lifecycle,
    lifecycle_new_vm_is_created,
    "a new VM is created, has the config's id, no exit status, and supports start and stop",
    new_vm_is_created
);

super::check!(
    Lifecycle,
    lifecycle_start_from_created,
    "start moves a created VM to running, its console going to the file the config names",
    start_from_created
);

super::check!(
    Lifecycle,
    lifecycle_start_when_running_invalid,
    "start while running gives InvalidState and changes nothing",
    start_running
);

super::check!(
    Lifecycle,
    lifecycle_start_when_paused_invalid,
    "start while paused gives InvalidState and changes nothing",
    start_paused
);

super::check!(
    Lifecycle,
    lifecycle_start_when_stopped_invalid,
    "start on a stopped VM gives InvalidState: stopped is terminal",
    start_stopped
);

super::check!(
    Lifecycle,
    lifecycle_pause_from_running,
    "pause moves a running VM to paused (or gives ActionNotSupported if the backend cannot pause)",
    pause_from_running
);

super::check!(
    Lifecycle,
    lifecycle_pause_when_created_invalid,
    "pause before start gives InvalidState (ActionNotSupported without pause)",
    pause_created
);

super::check!(
    Lifecycle,
    lifecycle_pause_when_paused_invalid,
    "pause while paused gives InvalidState",
    pause_paused
);

super::check!(
    Lifecycle,
    lifecycle_pause_when_stopped_invalid,
    "pause on a stopped VM gives InvalidState (ActionNotSupported without pause)",
    pause_stopped
);

super::check!(
    Lifecycle,
    lifecycle_resume_from_paused,
    "resume moves a paused VM back to running",
    resume_from_paused
);

super::check!(
    Lifecycle,
    lifecycle_resume_when_created_invalid,
    "resume before start gives InvalidState (ActionNotSupported without resume)",
    resume_created
);

super::check!(
    Lifecycle,
    lifecycle_resume_when_running_invalid,
    "resume while running gives InvalidState (ActionNotSupported without resume)",
    resume_running
);

super::check!(
    Lifecycle,
    lifecycle_resume_when_stopped_invalid,
    "resume on a stopped VM gives InvalidState (ActionNotSupported without resume)",
    resume_stopped
);

super::check!(
    Lifecycle,
    lifecycle_save_when_paused,
    "save while paused writes a snapshot and the VM stays paused (or ActionNotSupported, writing nothing)",
    save_when_paused
);

super::check!(
    Lifecycle,
    lifecycle_save_when_created_invalid,
    "save before start gives InvalidState (ActionNotSupported without save)",
    save_created
);

super::check!(
    Lifecycle,
    lifecycle_save_when_running_invalid,
    "save while running gives InvalidState (ActionNotSupported without save)",
    save_running
);

super::check!(
    Lifecycle,
    lifecycle_save_when_stopped_invalid,
    "save on a stopped VM gives InvalidState (ActionNotSupported without save)",
    save_stopped
);

super::check!(
    Lifecycle,
    lifecycle_restore_from_snapshot,
    "a saved snapshot restores to a paused VM that resumes with the disks and NICs the saved one had, cold and hot (unclaimed: ActionNotSupported { save })",
    restore_snapshot
);

super::check!(
    Lifecycle,
    lifecycle_stop_from_created,
    "stop before start moves the VM to stopped",
    stop_from_created
);

super::check!(
    Lifecycle,
    lifecycle_stop_from_running,
    "graceful and forced stops of a running VM end in stopped",
    stop_from_running
);

super::check!(
    Lifecycle,
    lifecycle_stop_while_paused,
    "forced and graceful stops of a paused VM end in stopped, in time",
    stop_while_paused
);

super::check!(
    Lifecycle,
    lifecycle_stop_when_stopped_is_noop,
    "stop on a stopped VM succeeds and changes nothing",
    stop_when_stopped
);

super::check!(
    Lifecycle,
    lifecycle_pause_resume_repeatedly,
    "ten pause/resume rounds each land in the right state and the guest still answers",
    pause_resume_repeatedly
);

super::check!(
    Lifecycle,
    lifecycle_guest_time_stops_while_paused,
    "guest time does not advance while the VM is paused",
    guest_time_stops_while_paused
);

super::check!(
    Lifecycle,
    lifecycle_every_call_on_stopped_vm_refused,
    "every lifecycle and manager call on a stopped VM, malformed adds too, gives InvalidState (NotSupported where unclaimed)",
    every_call_on_stopped
);

super::check!(
    Lifecycle,
    lifecycle_every_call_while_paused_follows_table,
    "while paused, device changes (malformed adds too), updates and connect give InvalidState and listen works",
    every_call_while_paused
);
