//! Concurrent callers: racing adds, stops, starts and lifecycle changes all
//! get consistent answers, and VMs of one backend do not affect each other
//! (two side by side for each manager: [`isolation`]).

mod isolation;
pub(crate) use isolation::*;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use uvm_api::{Action, Error, Operation, Resource, State, StopMode, StopReason, Uvm};

use super::device::{DeviceKind, Spec, claims, wait_seen};
use super::network::NicKind;
use super::plug::{maybe_view, refuse_add, unclaimed_op};
use super::scsi::ScsiKind;
use super::support::{create, expect_state, in_state};
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::step::{Must, Step, bail, ensure, fail};

/// Adds every spec at once from its own task; returns each result (`None`
/// where the VM has no manager to call).
async fn add_all(
    vm: Arc<dyn Uvm>,
    kind: &'static dyn DeviceKind,
    specs: &[Spec],
) -> Step<Vec<Option<uvm_api::Result<()>>>> {
    let tasks = specs.iter().cloned().map(|spec| {
        let vm = Arc::clone(&vm);
        tokio::spawn(async move { kind.add(&*vm, &spec).await })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| fail(format!("add task: {e}"))))
        .collect()
}

async fn distinct_adds(ctx: &Ctx, kind: &'static dyn DeviceKind, n: u32) -> Step {
    let vm = in_state(ctx, State::Running).await?;
    let specs = (1..=n)
        .map(|i| kind.fixture(ctx, i))
        .collect::<Step<Vec<_>>>()?;
    if !claims(kind, &*vm, Operation::Add)? {
        refuse_add(kind, &*vm, &specs[0], "a hot add").await?;
        return Err(unclaimed_op(kind, Operation::Add));
    }
    kind.prepare(&*vm).await?;
    let results = add_all(vm.arc(), kind, &specs).await?;
    for (spec, result) in specs.iter().zip(results) {
        result.unwrap_or(Ok(())).must(&format!(
            "one of {n} concurrent hot adds ({} {})",
            kind.noun(),
            kind.id(spec)
        ))?;
    }
    if let Some(probe) = maybe_view(kind, &*vm) {
        for spec in &specs {
            wait_seen(ctx, kind, probe, spec, &format!("{n} concurrent hot adds")).await?;
        }
    }
    Ok(())
}

async fn different_luns(ctx: Ctx) -> Step {
    distinct_adds(&ctx, &ScsiKind, 16).await
}

async fn different_nics(ctx: Ctx) -> Step {
    distinct_adds(&ctx, &NicKind, 8).await
}

async fn same_lun_race(ctx: Ctx) -> Step {
    const N: u32 = 8;
    let vm = in_state(&ctx, State::Running).await?;
    let mut specs = Vec::new();
    for seed in 0..N {
        // Same LUN 3, each with its own contents.
        let mut spec = ScsiKind.variant(&ctx, 3)?;
        if let Spec::Scsi(d) = &mut spec {
            crate::fixtures::write_image(&d.path, crate::fixtures::DISK_SIZE, 200 + seed)
                .map_err(|e| fail(format!("fixture: {e}")))?;
        }
        specs.push(spec);
    }
    if !claims(&ScsiKind, &*vm, Operation::Add)? {
        refuse_add(&ScsiKind, &*vm, &specs[0], "a hot add").await?;
        return Err(unclaimed_op(&ScsiKind, Operation::Add));
    }
    ScsiKind.prepare(&*vm).await?;
    let results = add_all(vm.arc(), &ScsiKind, &specs).await?;
    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result.unwrap_or(Ok(())) {
            Ok(()) => winners.push(i),
            Err(Error::AlreadyExists {
                resource: Resource::Scsi,
                ..
            }) => {}
            Err(e) => bail!(
                "{N} concurrent adds at LUN 0:3: expected one success and AlreadyExists for the rest, add {i} gave {}",
                crate::step::describe(&e)
            ),
        }
    }
    ensure!(
        winners.len() == 1,
        "{N} concurrent adds at LUN 0:3: expected exactly one to succeed, {} did ({winners:?})",
        winners.len()
    );
    if let Some(probe) = maybe_view(&ScsiKind, &*vm) {
        wait_seen(
            &ctx,
            &ScsiKind,
            probe,
            &specs[winners[0]],
            "a race for LUN 0:3",
        )
        .await?;
    }
    Ok(())
}

async fn concurrent_stops(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let tasks = (0..8).map(|i| {
        let vm = vm.arc();
        let mode = if i % 2 == 0 {
            StopMode::Force
        } else {
            super::support::GRACEFUL
        };
        tokio::spawn(async move { vm.stop(mode).await })
    });
    for (i, r) in join_all(tasks).await.into_iter().enumerate() {
        r.map_err(|e| fail(format!("stop task: {e}")))?
            .must(&format!("concurrent stop {i} of 8"))?;
    }
    expect_state(&*vm, State::Stopped, "8 concurrent stops")?;
    let status = vm.wait().await;
    ensure!(
        matches!(status.reason, StopReason::Killed | StopReason::Shutdown),
        "8 concurrent stops ended with reason {status}"
    );
    Ok(())
}

async fn concurrent_starts(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let tasks = (0..8).map(|_| {
        let vm = vm.arc();
        tokio::spawn(async move { vm.start().await })
    });
    let mut ok = 0;
    for r in join_all(tasks).await {
        match r.map_err(|e| fail(format!("start task: {e}")))? {
            Ok(()) => ok += 1,
            Err(Error::InvalidState { .. }) => {}
            Err(e) => bail!(
                "a concurrent start gave {}; expected success or InvalidState",
                crate::step::describe(&e)
            ),
        }
    }
    ensure!(
        ok == 1,
        "8 concurrent starts: expected exactly one to succeed, {ok} did"
    );
    expect_state(&*vm, State::Running, "8 concurrent starts")
}

async fn adds_racing_stop(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let claimed = claims(&NicKind, &*vm, Operation::Add)?;
    let specs = (1..=8)
        .map(|i| NicKind.fixture(&ctx, i))
        .collect::<Step<Vec<_>>>()?;
    let adds = {
        let vm = vm.arc();
        let specs = specs.clone();
        tokio::spawn(async move { add_all(vm, &NicKind, &specs).await })
    };
    vm.stop(StopMode::Force)
        .await
        .must("a stop racing hot adds")?;
    let results = adds.await.map_err(|e| fail(format!("adds task: {e}")))??;
    for (i, r) in results.into_iter().enumerate() {
        let Some(r) = r else {
            continue;
        };
        match r {
            Ok(()) if claimed => {}
            Err(Error::InvalidState { .. }) if claimed => {}
            Err(Error::NotSupported { .. }) if !claimed => {}
            Ok(()) => bail!("add {i} succeeded although supported(network, add) is false"),
            Err(e) if claimed => bail!(
                "add {i}, racing a stop, gave {}; expected success or InvalidState",
                crate::step::describe(&e)
            ),
            Err(e) => bail!(
                "add {i}, racing a stop, gave {}; expected NotSupported (supported(network, add) is false)",
                crate::step::describe(&e)
            ),
        }
    }
    expect_state(&*vm, State::Stopped, "a stop racing hot adds")?;
    let status = tokio::time::timeout(Duration::from_secs(1), vm.wait())
        .await
        .map_err(|_| fail("wait did not return after a stop that raced hot adds"))?;
    ensure!(
        status.reason == StopReason::Killed,
        "a forced stop racing hot adds ended with {status}"
    );
    Ok(())
}

async fn pause_resume_race(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    super::support::need_pause(&*vm)?;
    if !vm.supports_action(Action::Resume) {
        return Err(crate::step::skip("the backend cannot resume"));
    }
    let tasks = (0..16).map(|i| {
        let vm = vm.arc();
        tokio::spawn(async move {
            if i % 2 == 0 {
                vm.pause().await
            } else {
                vm.resume().await
            }
        })
    });
    for r in join_all(tasks).await {
        match r.map_err(|e| fail(format!("task: {e}")))? {
            Ok(()) | Err(Error::InvalidState { .. }) => {}
            Err(e) => bail!(
                "racing pauses and resumes: a call gave {}; expected success or InvalidState",
                crate::step::describe(&e)
            ),
        }
    }
    let state = vm.state();
    ensure!(
        matches!(state, State::Running | State::Paused),
        "after racing pauses and resumes the VM is {state}"
    );
    if state == State::Paused {
        vm.resume().await.must("resume after the race")?;
    }
    expect_state(&*vm, State::Running, "resume after the race")?;
    if let Some(probe) = vm.guest_probe() {
        probe
            .uptime()
            .await
            .must("asking the guest its uptime after the race")?;
    }
    Ok(())
}

async fn stats_during_lifecycle(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let poller = {
        let vm = vm.arc();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !vm.state().is_stopped() {
                vm.stats()
                    .await
                    .must(&format!("stats call {n} while the lifecycle changes"))?;
                n += 1;
                tokio::task::yield_now().await;
            }
            vm.stats().await.must("stats right after the stop")?;
            Ok::<u32, Outcome>(n)
        })
    };
    vm.start().await.must("start")?;
    if vm.supports_action(Action::Pause) && vm.supports_action(Action::Resume) {
        for _ in 0..5 {
            vm.pause().await.must("pause")?;
            vm.resume().await.must("resume")?;
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    vm.stop(StopMode::Force).await.must("stop")?;
    tokio::time::timeout(Duration::from_secs(5), poller)
        .await
        .map_err(|_| fail("the stats poller did not finish after the stop"))?
        .map_err(|e| fail(format!("stats poller: {e}")))??;
    Ok(())
}

async fn vms_isolated(ctx: Ctx) -> Step {
    let mut vms = Vec::new();
    for _ in 0..4 {
        vms.push(in_state(&ctx, State::Running).await?);
    }
    let spec = ScsiKind.fixture(&ctx, 1)?;
    if claims(&ScsiKind, &*vms[0], Operation::Add)? {
        ScsiKind.prepare(&*vms[0]).await?;
        super::device::add_claimed(
            &ScsiKind,
            &*vms[0],
            &spec,
            "adding a disk to the first of four VMs",
        )
        .await?;
        for (i, vm) in vms.iter().enumerate().skip(1) {
            if let Some(probe) = vm.guest_probe() {
                let seen = ScsiKind.seen(probe, &spec).await?;
                ensure!(
                    seen.is_none(),
                    "a disk added to VM 0 shows up in VM {i}: {seen:?}"
                );
            }
        }
    }
    vms[1]
        .stop(StopMode::Force)
        .await
        .must("stopping VM 1 of 4")?;
    if let Some(probe) = vms[2].guest_probe() {
        probe
            .trigger(uvm_api::GuestAction::Panic)
            .await
            .must("making the guest of VM 2 panic")?;
        let _ = tokio::time::timeout(Duration::from_secs(10), vms[2].wait()).await;
    }
    for i in [0, 3] {
        expect_state(
            &*vms[i],
            State::Running,
            &format!("stopping VM 1 and crashing VM 2 (VM {i})"),
        )?;
        if let Some(probe) = vms[i].guest_probe() {
            probe.uptime().await.must(&format!(
                "VM {i}'s guest answering after its neighbours stopped"
            ))?;
        }
    }
    let status = vms[1].wait().await;
    ensure!(
        status.reason == StopReason::Killed,
        "VM 1 stopped with {status}"
    );
    Ok(())
}

super::check!(
    Concurrency,
    concurrency_hot_adds_different_luns_all_land,
    "16 concurrent hot adds of disks at different LUNs all succeed and all land in the guest",
    different_luns
);

super::check!(
    Concurrency,
    concurrency_hot_adds_different_nics_all_land,
    "8 concurrent hot adds of different NICs all succeed and all land in the guest",
    different_nics
);

super::check!(
    Concurrency,
    concurrency_same_lun_race_one_wins,
    "of 8 concurrent adds at one LUN exactly one succeeds, the rest get AlreadyExists, and the guest sees the winner",
    same_lun_race
);

super::check!(
    Concurrency,
    concurrency_concurrent_stops,
    "8 concurrent stops all succeed and the VM stops once",
    concurrent_stops
);

super::check!(
    Concurrency,
    concurrency_concurrent_starts_one_wins,
    "of 8 concurrent starts exactly one succeeds, the rest get InvalidState",
    concurrent_starts
);

super::check!(
    Concurrency,
    concurrency_adds_racing_stop,
    "hot adds racing a forced stop each succeed or get InvalidState, and the VM ends killed",
    adds_racing_stop
);

super::check!(
    Concurrency,
    concurrency_pause_resume_race,
    "racing pauses and resumes each succeed or get InvalidState, and the VM ends in a consistent, working state",
    pause_resume_race
);

super::check!(
    Concurrency,
    concurrency_stats_during_lifecycle,
    "stats polled nonstop while the VM starts, pauses, resumes and stops always answer",
    stats_during_lifecycle
);

super::check!(
    Concurrency,
    concurrency_vms_are_isolated,
    "VMs of one backend are isolated: a disk, a stop or a guest panic in one does not show in another",
    vms_isolated
);
