//! The unplug rules every kind of device follows: two-phase removal, the id
//! reserved until the guest releases it, `NotFound` for what is not there.

use uvm_api::{Operation, State, Uvm};

use super::device::{
    DeviceKind, Spec, add_claimed, claims, expect_unseen, remove_claimed, wait_gone, wait_seen,
};
use super::plug::{add_and_remove, maybe_view, refuse_add, unclaimed_op};
use super::support::{Before, complete, create, created_and_running, refused};
use crate::ctx::Ctx;
use crate::step::{Must, Step, Want, bail, expect_err, skip, unclaimed};

/// Whether removal can be fully exercised on this VM, in its current state
/// (`Created` or `Running`), with device `spec`: `Ok` if add and remove are
/// claimed; otherwise the end of the check, once what can be verified was:
/// unclaimed after the refusal of what is not claimed, skipped when only add
/// is missing (there is then nothing to remove, and removing an unknown
/// device gave `NotFound`).
pub(crate) async fn removable(kind: &dyn DeviceKind, vm: &dyn Uvm, spec: &Spec) -> Step {
    let r = kind.resource();
    let can_add = claims(kind, vm, Operation::Add)?;
    let can_remove = claims(kind, vm, Operation::Remove)?;
    let state = vm.state();
    let what = format!("removing {} {} ({state})", kind.noun(), kind.id(spec));
    match (can_add, can_remove) {
        (true, true) => Ok(()),
        (false, true) => {
            let what = format!(
                "removing {} {} that was never added ({state})",
                kind.noun(),
                kind.id(spec)
            );
            expect_err(
                &what,
                kind.remove(vm, spec)
                    .await
                    .unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, ""))),
                Want::NotFound(r),
            )?;
            Err(skip(format!(
                "supported({r}, add) is false, so there is no {} to remove (removing an unknown one gave NotFound as it should)",
                kind.noun()
            )))
        }
        (true, false) => {
            kind.prepare(vm).await?;
            add_claimed(kind, vm, spec, &format!("adding while {state}")).await?;
            let before = Before::take(vm).await?;
            let result = kind.remove(vm, spec).await;
            refused(vm, &before, &what, r, Operation::Remove, result).await?;
            Err(unclaimed_op(kind, Operation::Remove))
        }
        (false, false) => {
            refuse_add(kind, vm, spec, "an add").await?;
            let before = Before::take(vm).await?;
            let result = kind.remove(vm, spec).await;
            refused(vm, &before, &what, r, Operation::Remove, result).await?;
            Err(unclaimed(&add_and_remove(r)))
        }
    }
}

/// Removed while running: the removal completes and the guest no longer sees the device.
pub(crate) async fn hot_remove(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let spec = kind.fixture(&ctx, 1)?;
    removable(kind, &*vm, &spec).await?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, "adding while running").await?;
    let probe = maybe_view(kind, &*vm);
    if let Some(probe) = probe {
        wait_seen(&ctx, kind, probe, &spec, "a hot add").await?;
    }
    let removal = remove_claimed(kind, &*vm, &spec, "removing while running").await?;
    complete(&ctx, &removal, "a hot remove").await?;
    match probe {
        Some(probe) => wait_gone(&ctx, kind, probe, &spec, "a completed hot remove").await,
        None => Ok(()),
    }
}

/// Removed before start: the removal completes and the guest never sees the device.
pub(crate) async fn cold_remove(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let vm = create(&ctx).await?;
    let spec = kind.fixture(&ctx, 1)?;
    removable(kind, &*vm, &spec).await?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, "adding before start").await?;
    let removal = remove_claimed(kind, &*vm, &spec, "removing before start").await?;
    complete(&ctx, &removal, "a cold remove").await?;
    vm.start().await.must("start after a cold remove")?;
    if let Some(probe) = maybe_view(kind, &*vm) {
        expect_unseen(kind, probe, &spec, "a cold plug, a cold remove and start").await?;
    }
    Ok(())
}

/// After a completed removal the same id can be added again, and works.
pub(crate) async fn readd(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let spec = kind.fixture(&ctx, 1)?;
    removable(kind, &*vm, &spec).await?;
    kind.prepare(&*vm).await?;
    let probe = maybe_view(kind, &*vm);
    for round in 1..=3 {
        add_claimed(
            kind,
            &*vm,
            &spec,
            &format!("add number {round} of the same id"),
        )
        .await?;
        if let Some(probe) = probe {
            wait_seen(&ctx, kind, probe, &spec, &format!("add number {round}")).await?;
        }
        let removal = remove_claimed(kind, &*vm, &spec, &format!("remove number {round}")).await?;
        complete(&ctx, &removal, &format!("remove number {round}")).await?;
        if let Some(probe) = probe {
            wait_gone(&ctx, kind, probe, &spec, &format!("remove number {round}")).await?;
        }
    }
    Ok(())
}

/// Removing a removed device again gives `NotFound`, before start and while running.
pub(crate) async fn double_remove(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    created_and_running(|state| double_remove_in(&ctx, kind, state)).await
}

async fn double_remove_in(ctx: &Ctx, kind: &'static dyn DeviceKind, state: State) -> Step {
    let r = kind.resource();
    let vm = create(ctx).await?;
    if state == State::Running {
        vm.start().await.must("start")?;
    }
    let spec = kind.fixture(ctx, 1)?;
    removable(kind, &*vm, &spec).await?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, &format!("adding while {state}")).await?;
    let removal = remove_claimed(kind, &*vm, &spec, &format!("removing while {state}")).await?;
    complete(ctx, &removal, "the first remove").await?;
    let what = format!(
        "removing {} {} a second time ({state}), after its removal completed",
        kind.noun(),
        kind.id(&spec)
    );
    let again = kind.remove(&*vm, &spec).await;
    expect_err(
        &what,
        again.unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, ""))),
        Want::NotFound(r),
    )?;
    Ok(())
}

/// Removing an id that was never added gives `NotFound` (or `NotSupported` if
/// removal is not claimed), before start and while running.
pub(crate) async fn remove_unknown(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    created_and_running(|state| remove_unknown_in(&ctx, kind, state)).await
}

async fn remove_unknown_in(ctx: &Ctx, kind: &'static dyn DeviceKind, state: State) -> Step {
    let r = kind.resource();
    let vm = create(ctx).await?;
    if state == State::Running {
        vm.start().await.must("start")?;
    }
    if claims(kind, &*vm, Operation::Add)? {
        kind.prepare(&*vm).await?;
    }
    let spec = kind.fixture(ctx, 7)?;
    let what = format!(
        "removing {} {} that was never added ({state})",
        kind.noun(),
        kind.id(&spec)
    );
    let before = Before::take(&*vm).await?;
    let result = kind.remove(&*vm, &spec).await;
    if !claims(kind, &*vm, Operation::Remove)? {
        refused(&*vm, &before, &what, r, Operation::Remove, result).await?;
        return Err(unclaimed_op(kind, Operation::Remove));
    }
    expect_err(
        &what,
        result.unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, ""))),
        Want::NotFound(r),
    )?;
    before.unchanged(&*vm, &what).await
}

/// An id being released cannot be reused before its removal completes, and
/// can be right after.
pub(crate) async fn reserved_until_complete(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let r = kind.resource();
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let spec = kind.fixture(&ctx, 1)?;
    removable(kind, &*vm, &spec).await?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, "adding while running").await?;
    if let Some(probe) = maybe_view(kind, &*vm) {
        wait_seen(&ctx, kind, probe, &spec, "a hot add").await?;
    }
    let removal = remove_claimed(kind, &*vm, &spec, "removing while running").await?;
    let done_before = removal.is_complete();
    let again = kind.add(&*vm, &spec).await.unwrap_or(Ok(()));
    let done_after = removal.is_complete();
    let id = kind.id(&spec);
    match again {
        Ok(()) if !done_after => bail!(
            "re-adding {} {id} while its removal was still pending succeeded; expected AlreadyExists until the guest released it",
            kind.noun()
        ),
        Ok(()) => {}
        Err(uvm_api::Error::AlreadyExists { .. }) if done_before => bail!(
            "re-adding {} {id} after its removal had completed gave AlreadyExists; expected success",
            kind.noun()
        ),
        Err(uvm_api::Error::AlreadyExists { resource, .. }) if resource == r => {
            complete(&ctx, &removal, "a hot remove").await?;
            add_claimed(
                kind,
                &*vm,
                &spec,
                "re-adding right after the removal completed",
            )
            .await?;
        }
        Err(e) => bail!(
            "re-adding {} {id} while its removal was pending: expected AlreadyExists {{ {r} }} (or success once complete), got {}",
            kind.noun(),
            crate::step::describe(&e)
        ),
    }
    if let Some(probe) = maybe_view(kind, &*vm) {
        wait_seen(&ctx, kind, probe, &spec, "re-adding after the removal").await?;
    }
    Ok(())
}

/// Removing a device whose removal is still pending gives `NotFound`: the
/// second `remove` right after the first, while the guest is releasing the
/// device (or just after it let go, when `NotFound` holds too), neither
/// answers with a removal nor disturbs the first, which still completes.
pub(crate) async fn remove_while_releasing(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let r = kind.resource();
    let vm = create(&ctx).await?;
    let spec = kind.fixture(&ctx, 1)?;
    // Settled before start, so that a kind the VM cannot remove costs no boot.
    removable(kind, &*vm, &spec).await?;
    vm.start().await.must("start")?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, "adding while running").await?;
    if let Some(probe) = maybe_view(kind, &*vm) {
        wait_seen(&ctx, kind, probe, &spec, "a hot add").await?;
    }
    let removal = remove_claimed(kind, &*vm, &spec, "removing while running").await?;
    let pending = !removal.is_complete();
    let again = kind.remove(&*vm, &spec).await;
    let what = format!(
        "removing {} {} again right after its removal began (the first removal {} when it returned)",
        kind.noun(),
        kind.id(&spec),
        if pending && !removal.is_complete() {
            "was still pending"
        } else {
            "had completed"
        }
    );
    expect_err(
        &what,
        again.unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, ""))),
        Want::NotFound(r),
    )?;
    complete(&ctx, &removal, "the first removal, after a second remove").await?;
    if let Some(probe) = maybe_view(kind, &*vm) {
        wait_gone(&ctx, kind, probe, &spec, "the completed removal").await?;
    }
    Ok(())
}
