//! The plug rules every kind of device follows, written once: cold plug,
//! hot add, their agreement, duplicates, and refusals while paused or stopped.

use futures::future::BoxFuture;
use uvm_api::{Operation, State, Uvm};

use super::device::{DeviceKind, Spec, add_claimed, claims, expect_unseen, wait_seen};
use super::support::{
    Before, create, created_and_running, expect_state, need_pause, reach, refused,
};
use crate::capability::Capability;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::step::{Must, Parts, Step, Want, ensure, expect_err, fail, skip, unclaimed, verdict};

/// The device kinds a check runs over.
pub(crate) type Kinds = &'static [&'static dyn DeviceKind];

/// A check body for one kind.
pub(crate) type KindBody = fn(Ctx, &'static dyn DeviceKind) -> BoxFuture<'static, Step>;

/// Runs `body` for each kind: the first failure fails the check (named by
/// kind when there are several); the check passes if any kind proved a
/// claimed capability, ends unclaimed if the kinds that ran only verified
/// honest refusals, and is skipped only if every kind was.
pub(crate) async fn each(ctx: Ctx, kinds: Kinds, body: KindBody) -> Step {
    let label = |kind: &dyn DeviceKind, message: String| {
        if kinds.len() > 1 {
            format!("[{}] {message}", kind.resource())
        } else {
            message
        }
    };
    let mut parts = Parts::default();
    let mut skipped = Vec::new();
    for kind in kinds {
        match body(ctx.clone(), *kind).await {
            Err(Outcome::Skipped(reason)) => skipped.push(label(*kind, reason)),
            Err(Outcome::Failed(message)) => return Err(fail(label(*kind, message))),
            Err(Outcome::Unclaimed(message)) => {
                parts.part(Err(Outcome::Unclaimed(label(*kind, message))))?;
            }
            end => parts.part(end)?,
        }
    }
    if parts.is_empty() && !skipped.is_empty() {
        return Err(skip(skipped.join("; ")));
    }
    parts.end()
}

/// The end of a check whose `operation` the VM does not claim for `kind`,
/// once the refusal has been verified.
pub(crate) fn unclaimed_op(kind: &dyn DeviceKind, operation: Operation) -> Outcome {
    unclaimed(&[Capability::Pair(kind.resource(), operation)])
}

/// The guest probe, if this kind can be observed and the VM has one; else the skip reason.
fn view<'a>(
    kind: &dyn DeviceKind,
    vm: &'a dyn Uvm,
) -> Result<&'a dyn uvm_api::GuestProbe, Outcome> {
    if !kind.observable() {
        return Err(skip(format!(
            "the guest probe has no view of {} devices",
            kind.resource()
        )));
    }
    super::support::probe(vm)
}

/// The guest probe if there is a view, else `None` (for optional guest-side assertions).
pub(crate) fn maybe_view<'a>(
    kind: &dyn DeviceKind,
    vm: &'a dyn Uvm,
) -> Option<&'a dyn uvm_api::GuestProbe> {
    view(kind, vm).ok()
}

/// Expects an add the VM does not claim to be refused with `NotSupported` and
/// change nothing, including the other add calls of the resource.
pub(crate) async fn refuse_add(
    kind: &dyn DeviceKind,
    vm: &dyn Uvm,
    spec: &Spec,
    what: &str,
) -> Step {
    let before = Before::take(vm).await?;
    let r = kind.resource();
    let what = format!("{what} of {} {}", kind.noun(), kind.id(spec));
    refused(
        vm,
        &before,
        &what,
        r,
        Operation::Add,
        kind.add(vm, spec).await,
    )
    .await?;
    refused(
        vm,
        &before,
        &format!("adding a {r} controller"),
        r,
        Operation::Add,
        kind.add_other(vm).await,
    )
    .await?;
    if vm.state() == State::Running
        && let Some(probe) = maybe_view(kind, vm)
    {
        expect_unseen(kind, probe, spec, &what).await?;
    }
    Ok(())
}

/// Cold plug: added before start, the device is in the guest after boot.
pub(crate) async fn cold_plug_visible(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let vm = create(&ctx).await?;
    let spec = kind.fixture(&ctx, 1)?;
    if !claims(kind, &*vm, Operation::Add)? {
        refuse_add(kind, &*vm, &spec, "a cold plug").await?;
        vm.start().await.must("start after a refused cold plug")?;
        if let Some(probe) = maybe_view(kind, &*vm) {
            expect_unseen(kind, probe, &spec, "a refused cold plug and start").await?;
        }
        return Err(unclaimed_op(kind, Operation::Add));
    }
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, "adding before start").await?;
    expect_state(&*vm, State::Created, "a cold plug")?;
    vm.start().await.must("start after a cold plug")?;
    let probe = view(kind, &*vm)?;
    wait_seen(&ctx, kind, probe, &spec, "a cold plug and start").await?;
    Ok(())
}

/// Hot add: added while running, the guest sees the device.
pub(crate) async fn hot_add_visible(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let spec = kind.fixture(&ctx, 1)?;
    if !claims(kind, &*vm, Operation::Add)? {
        refuse_add(kind, &*vm, &spec, "a hot add").await?;
        return Err(unclaimed_op(kind, Operation::Add));
    }
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, "adding while running").await?;
    expect_state(&*vm, State::Running, "a hot add")?;
    let probe = view(kind, &*vm)?;
    wait_seen(&ctx, kind, probe, &spec, "a hot add").await?;
    Ok(())
}

/// Cold plug before start and hot add while running give the guest the same device.
pub(crate) async fn cold_and_hot_agree(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let cold = create(&ctx).await?;
    let hot = create(&ctx).await?;
    let cold_spec = kind.fixture(&ctx, 2)?;
    let hot_spec = kind.for_another_vm(&kind.fixture(&ctx, 2)?);
    if !claims(kind, &*cold, Operation::Add)? {
        refuse_add(kind, &*cold, &cold_spec, "a cold plug").await?;
        hot.start().await.must("start")?;
        refuse_add(kind, &*hot, &hot_spec, "a hot add").await?;
        return Err(unclaimed_op(kind, Operation::Add));
    }
    kind.prepare(&*cold).await?;
    add_claimed(kind, &*cold, &cold_spec, "adding before start").await?;
    cold.start().await.must("start after a cold plug")?;
    hot.start().await.must("start")?;
    kind.prepare(&*hot).await?;
    add_claimed(kind, &*hot, &hot_spec, "adding while running").await?;
    let cold_probe = view(kind, &*cold)?;
    let hot_probe = view(kind, &*hot)?;
    let cold_seen = wait_seen(&ctx, kind, cold_probe, &cold_spec, "a cold plug").await?;
    let limit = ctx.settings().guest_timeout;
    let (agreed, last) = super::support::eventually(limit, || async {
        let seen = kind.seen(hot_probe, &hot_spec).await?;
        Ok((seen.as_ref() == Some(&cold_seen), seen))
    })
    .await?;
    ensure!(
        agreed,
        "cold plug and hot add of the same {} disagree: after a cold plug the guest sees {cold_seen:?}, after a hot add {}",
        kind.noun(),
        match last {
            Some(seen) => format!("{seen:?}"),
            None => format!("nothing (waited {limit:?})"),
        }
    );
    Ok(())
}

/// Adding an id in use gives `AlreadyExists` and leaves the first device as
/// it was, before start and while running.
pub(crate) async fn duplicate_add(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    created_and_running(|state| duplicate_add_in(&ctx, kind, state)).await
}

async fn duplicate_add_in(ctx: &Ctx, kind: &'static dyn DeviceKind, state: State) -> Step {
    let r = kind.resource();
    let vm = create(ctx).await?;
    let spec = kind.fixture(ctx, 1)?;
    let twin = kind.variant(ctx, 1)?;
    if !claims(kind, &*vm, Operation::Add)? {
        reach(&*vm, state).await?;
        refuse_add(kind, &*vm, &spec, "an add").await?;
        refuse_add(kind, &*vm, &twin, "a second add").await?;
        return Err(unclaimed_op(kind, Operation::Add));
    }
    reach(&*vm, state).await?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, &format!("the first add ({state})")).await?;
    let what = format!(
        "adding {} {} again while {state}, with other contents",
        kind.noun(),
        kind.id(&spec)
    );
    expect_err(
        &what,
        kind.add(&*vm, &twin).await.unwrap_or(Ok(())),
        Want::AlreadyExists(r),
    )?;
    if state == State::Created {
        vm.start().await.must("start")?;
    }
    if let Some(probe) = maybe_view(kind, &*vm) {
        wait_seen(ctx, kind, probe, &spec, &what).await?;
        let twin_seen = kind.seen(probe, &twin).await?;
        ensure!(
            twin_seen.as_ref() != Some(&kind.expected(&twin)?),
            "after {what}: the refused device is in the guest ({twin_seen:?})"
        );
    }
    Ok(())
}

/// Add and remove while paused give `InvalidState` and change nothing.
pub(crate) async fn changes_while_paused(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let r = kind.resource();
    let vm = create(&ctx).await?;
    need_pause(&*vm)?;
    let present = kind.fixture(&ctx, 1)?;
    let extra = kind.fixture(&ctx, 2)?;
    let can_add = claims(kind, &*vm, Operation::Add)?;
    let can_remove = claims(kind, &*vm, Operation::Remove)?;
    if can_add {
        kind.prepare(&*vm).await?;
        add_claimed(kind, &*vm, &present, "adding before start").await?;
    }
    vm.start().await.must("start")?;
    vm.pause().await.must("pause")?;
    let before = Before::take(&*vm).await?;
    let add = kind.add(&*vm, &extra).await;
    let what = format!("adding {} {} while paused", kind.noun(), kind.id(&extra));
    if can_add {
        expect_err(
            &what,
            add.unwrap_or(Ok(())),
            Want::InvalidState(State::Paused),
        )?;
    } else {
        refused(&*vm, &before, &what, r, Operation::Add, add).await?;
    }
    let remove = kind.remove(&*vm, &present).await;
    let what = format!(
        "removing {} {} while paused",
        kind.noun(),
        kind.id(&present)
    );
    if can_remove {
        let result = remove.unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, "")));
        expect_err(&what, result, Want::InvalidState(State::Paused))?;
    } else {
        refused(&*vm, &before, &what, r, Operation::Remove, remove).await?;
    }
    before
        .unchanged(&*vm, "refused changes while paused")
        .await?;
    let end = verdict(can_add || can_remove, &add_and_remove(r));
    if !vm.supports_action(uvm_api::Action::Resume) {
        return end;
    }
    vm.resume().await.must("resume")?;
    if let Some(probe) = maybe_view(kind, &*vm) {
        expect_unseen(
            kind,
            probe,
            &extra,
            "an add refused while paused, and resume",
        )
        .await?;
        if can_add {
            wait_seen(
                &ctx,
                kind,
                probe,
                &present,
                "a remove refused while paused, and resume",
            )
            .await?;
        }
    }
    end
}

/// Add and remove on a stopped VM give `InvalidState`.
pub(crate) async fn changes_after_stop(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let r = kind.resource();
    let vm = create(&ctx).await?;
    let present = kind.fixture(&ctx, 1)?;
    let extra = kind.fixture(&ctx, 2)?;
    let can_add = claims(kind, &*vm, Operation::Add)?;
    let can_remove = claims(kind, &*vm, Operation::Remove)?;
    if can_add {
        kind.prepare(&*vm).await?;
        add_claimed(kind, &*vm, &present, "adding before start").await?;
    }
    vm.start().await.must("start")?;
    vm.stop(uvm_api::StopMode::Force).await.must("force stop")?;
    let before = Before::take(&*vm).await?;
    let what = format!("adding {} {} to a stopped VM", kind.noun(), kind.id(&extra));
    let add = kind.add(&*vm, &extra).await;
    if can_add {
        expect_err(
            &what,
            add.unwrap_or(Ok(())),
            Want::InvalidState(State::Stopped),
        )?;
        if let Some(other) = kind.add_other(&*vm).await {
            expect_err(
                &format!("adding a {r} controller to a stopped VM"),
                other,
                Want::InvalidState(State::Stopped),
            )?;
        }
    } else {
        refused(&*vm, &before, &what, r, Operation::Add, add).await?;
    }
    let what = format!(
        "removing {} {} from a stopped VM",
        kind.noun(),
        kind.id(&present)
    );
    let remove = kind.remove(&*vm, &present).await;
    if can_remove {
        let result = remove.unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, "")));
        expect_err(&what, result, Want::InvalidState(State::Stopped))?;
    } else {
        refused(&*vm, &before, &what, r, Operation::Remove, remove).await?;
    }
    expect_state(&*vm, State::Stopped, "refused changes on a stopped VM")?;
    verdict(can_add || can_remove, &add_and_remove(r))
}

/// Adding and removing `r`, the capabilities a device check is about.
pub(crate) fn add_and_remove(r: uvm_api::Resource) -> [Capability; 2] {
    [
        Capability::Pair(r, Operation::Add),
        Capability::Pair(r, Operation::Remove),
    ]
}

/// A device in the config's boot devices is in the guest after start; a
/// backend whose capabilities lack the add refuses the config with `NotSupported`.
pub(crate) async fn boot_config_visible(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let r = kind.resource();
    let spec = kind.fixture(&ctx, 1)?;
    let mut config = ctx.config();
    if !kind.boot(&mut config, &spec) {
        return Err(skip(format!(
            "{r} devices have no boot-time form in the config"
        )));
    }
    let what = format!(
        "creating a VM whose config has a boot-time {} {}",
        kind.noun(),
        kind.id(&spec)
    );
    let result = ctx.backend().create(config).await;
    if !ctx.backend().capabilities().supports(r, Operation::Add) {
        expect_err(
            &format!("{what} (the backend's capabilities lack ({r}, add))"),
            result,
            Want::NotSupported(r, Operation::Add),
        )?;
        return Err(unclaimed_op(kind, Operation::Add));
    }
    let vm = super::support::Vm::new(result.must(&what)?);
    ensure!(
        vm.supported(r, Operation::Add),
        "{what}: the VM was created with the device although it answers supported({r}, add) false"
    );
    vm.start().await.must("start with boot-time devices")?;
    let probe = view(kind, &*vm)?;
    wait_seen(&ctx, kind, probe, &spec, "a start with a boot-time device").await?;
    Ok(())
}
