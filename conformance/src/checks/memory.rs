//! Guest memory updates, checked through the assigned memory in `stats`.

use uvm_api::config::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use uvm_api::{Action, Error, Operation, Resource, State, Uvm};

use super::support::{Before, create, eventually, in_state, need_pause, reach, refused};
use super::update::{Update, bad_arguments, claimed, refused_outside, unclaimed_update};
use crate::ctx::Ctx;
use crate::step::{Must, Step, bail, ensure, fail};

const MIB: u64 = 1 << 20;

/// Sizes to try: half the configured size (a balloon can do that), then double (hot-add).
fn targets(ctx: &Ctx) -> Vec<u64> {
    let m = ctx.template().memory_mib;
    let mut sizes = Vec::new();
    if m / 2 >= MIN_MEMORY_MIB {
        sizes.push(m / 2);
    }
    if m * 2 <= MAX_MEMORY_MIB {
        sizes.push(m * 2);
    }
    sizes
}

async fn assigned(vm: &dyn Uvm) -> Step<u64> {
    Ok(vm.stats().await.must("stats")?.memory.assigned_bytes)
}

/// Updates memory to the first size the backend accepts; fails if it takes none.
pub(crate) async fn resize(ctx: &Ctx, vm: &dyn Uvm, state: State) -> Step<u64> {
    let Some(manager) = vm.memory() else {
        bail!("no memory manager");
    };
    let mut refusals = Vec::new();
    for mib in targets(ctx) {
        match manager.update_memory(mib).await {
            Ok(()) => return Ok(mib),
            Err(Error::InvalidArgument { reason, .. }) => {
                refusals.push(format!("{mib} MiB: {reason}"))
            }
            Err(e) => return Err(e).must(&format!("update_memory({mib}) while {state}")),
        }
    }
    Err(fail(format!(
        "supported(memory, update) is true but every size tried was refused while {state}: {}",
        refusals.join("; ")
    )))
}

/// Waits until stats show `mib` assigned.
pub(crate) async fn shows(ctx: &Ctx, vm: &dyn Uvm, mib: u64, after: &str) -> Step {
    let want = mib * MIB;
    let (ok, last) = eventually(ctx.settings().guest_timeout, || async {
        let now = assigned(vm).await?;
        Ok((now == want, now))
    })
    .await?;
    ensure!(
        ok,
        "after {after}: stats show {last} bytes assigned; expected {want} ({mib} MiB)"
    );
    Ok(())
}

pub(super) async fn while_running(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let probe = Update::Memory(ctx.template().memory_mib);
    if !claimed(&*vm, &probe)? {
        let before = Before::take(&*vm).await?;
        let was = assigned(&*vm).await?;
        for mib in targets(&ctx) {
            let result = Update::Memory(mib).apply(&*vm).await;
            refused(
                &*vm,
                &before,
                &format!("update_memory({mib})"),
                Resource::Memory,
                Operation::Update,
                result,
            )
            .await?;
        }
        let now = assigned(&*vm).await?;
        ensure!(
            now == was,
            "a refused memory update changed assigned memory from {was} to {now}"
        );
        return Err(unclaimed_update(&probe));
    }
    let mib = resize(&ctx, &*vm, State::Running).await?;
    shows(
        &ctx,
        &*vm,
        mib,
        &format!("update_memory({mib}) while running"),
    )
    .await
}

pub(super) async fn before_start(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Created).await?;
    let probe = Update::Memory(ctx.template().memory_mib);
    if !claimed(&*vm, &probe)? {
        let before = Before::take(&*vm).await?;
        for mib in targets(&ctx) {
            let result = Update::Memory(mib).apply(&*vm).await;
            refused(
                &*vm,
                &before,
                &format!("update_memory({mib}) before start"),
                Resource::Memory,
                Operation::Update,
                result,
            )
            .await?;
        }
        return Err(unclaimed_update(&probe));
    }
    let mib = resize(&ctx, &*vm, State::Created).await?;
    vm.start().await.must("start after a memory update")?;
    shows(
        &ctx,
        &*vm,
        mib,
        &format!("update_memory({mib}) before start, and start"),
    )
    .await
}

async fn outside(ctx: Ctx) -> Step {
    refused_outside(&ctx, &Update::Memory(ctx.template().memory_mib)).await
}

/// The refusal of a VM that does not claim memory updates, before start:
/// every target size gives `NotSupported` and changes nothing.
async fn refused_unclaimed(ctx: &Ctx, vm: &dyn Uvm) -> Step {
    let before = Before::take(vm).await?;
    for mib in targets(ctx) {
        let result = Update::Memory(mib).apply(vm).await;
        refused(
            vm,
            &before,
            &format!("update_memory({mib})"),
            Resource::Memory,
            Operation::Update,
            result,
        )
        .await?;
    }
    Err(unclaimed_update(&Update::Memory(ctx.template().memory_mib)))
}

/// An update made while running holds across a pause and a resume.
async fn survives_pause(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    if !claimed(&*vm, &Update::Memory(ctx.template().memory_mib))? {
        return refused_unclaimed(&ctx, &*vm).await;
    }
    need_pause(&*vm)?;
    if !vm.supports_action(Action::Resume) {
        return Err(crate::step::skip(
            "the backend cannot resume, so a pause cannot be undone",
        ));
    }
    reach(&*vm, State::Running).await?;
    let mib = resize(&ctx, &*vm, State::Running).await?;
    let what = format!("update_memory({mib}) while running");
    shows(&ctx, &*vm, mib, &what).await?;
    vm.pause().await.must("pause")?;
    vm.resume().await.must("resume")?;
    shows(&ctx, &*vm, mib, &format!("{what}, a pause and a resume")).await
}

/// A size that is not a multiple of any block (one MiB above the
/// configured size) is either given exactly or refused with
/// `InvalidArgument`, leaving the size: never rounded.
async fn odd_size(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let odd = ctx.template().memory_mib + 1;
    if !claimed(&*vm, &Update::Memory(odd))? {
        return refused_unclaimed(&ctx, &*vm).await;
    }
    let was = assigned(&*vm).await?;
    match Update::Memory(odd).apply(&*vm).await.unwrap_or(Ok(())) {
        Ok(()) => {
            shows(
                &ctx,
                &*vm,
                odd,
                &format!("update_memory({odd}) before start"),
            )
            .await
        }
        Err(Error::InvalidArgument { .. }) => {
            let now = assigned(&*vm).await?;
            ensure!(
                now == was,
                "update_memory({odd}) gave InvalidArgument but assigned memory went from {was} to {now}"
            );
            Ok(())
        }
        Err(e) => bail!(
            "update_memory({odd}) before start: expected success or InvalidArgument, got {}",
            crate::step::describe(&e)
        ),
    }
}

async fn out_of_range(ctx: Ctx) -> Step {
    bad_arguments(
        &ctx,
        &[Update::Memory(0), Update::Memory(MAX_MEMORY_MIB + 1)],
    )
    .await
}

super::check!(
    Memory,
    memory_update_while_running,
    "a memory update while running takes effect: stats show the new size (NotSupported, changing nothing, if unclaimed)",
    while_running
);

super::check!(
    Memory,
    memory_update_before_start,
    "a memory update before start is the size the VM boots with",
    before_start
);

super::check!(
    Memory,
    memory_update_survives_pause_resume,
    "a memory update made while running still shows in stats after a pause and a resume",
    survives_pause
);

super::check!(
    Memory,
    memory_update_to_odd_size_exact_or_refused,
    "a size one MiB above the configured one is given exactly or refused with InvalidArgument, never rounded",
    odd_size
);

super::check!(
    Memory,
    memory_update_paused_or_stopped_invalid_state,
    "a memory update while paused or after stop gives InvalidState",
    outside
);

super::check!(
    Memory,
    memory_update_out_of_range_invalid_argument,
    "zero or more than the contract's maximum gives InvalidArgument and changes nothing",
    out_of_range
);
