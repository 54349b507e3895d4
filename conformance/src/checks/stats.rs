//! `stats` in every state: figures that move while the guest runs, stay
//! consistent with each other and the config, and freeze once it stops.

use std::time::Duration;

use uvm_api::{Action, State, Stats, StopMode, Uvm};

use super::support::{create, in_state, need_pause};
use crate::ctx::Ctx;
use crate::step::{Must, Step, ensure};

const MIB: u64 = 1 << 20;

async fn sample(vm: &dyn Uvm, when: &str) -> Step<Stats> {
    vm.stats().await.must(&format!("stats {when}"))
}

/// The internal consistency every sample must have.
fn consistent(stats: &Stats, when: &str) -> Step {
    let sum: Duration = stats.processor.per_vcpu.iter().sum();
    ensure!(
        stats.processor.total_runtime == sum,
        "stats {when}: processor total_runtime {:?} is not the sum of per_vcpu {:?} ({sum:?})",
        stats.processor.total_runtime,
        stats.processor.per_vcpu
    );
    if let Some(avail) = stats.memory.guest_available_bytes {
        ensure!(
            avail <= stats.memory.assigned_bytes,
            "stats {when}: guest_available_bytes {avail} exceeds assigned_bytes {}",
            stats.memory.assigned_bytes
        );
    }
    Ok(())
}

/// Fails if any figure that only grows went down from `a` to `b`.
fn not_backwards(a: &Stats, b: &Stats, between: &str) -> Step {
    ensure!(
        b.uptime >= a.uptime,
        "uptime went back from {:?} to {:?} {between}",
        a.uptime,
        b.uptime
    );
    ensure!(
        b.processor.total_runtime >= a.processor.total_runtime,
        "processor total_runtime went back from {:?} to {:?} {between}",
        a.processor.total_runtime,
        b.processor.total_runtime
    );
    for (i, (x, y)) in a
        .processor
        .per_vcpu
        .iter()
        .zip(&b.processor.per_vcpu)
        .enumerate()
    {
        ensure!(
            y >= x,
            "vCPU {i} runtime went back from {x:?} to {y:?} {between}"
        );
    }
    for (name, before) in &a.counters {
        if let Some(after) = b.counters.get(name) {
            ensure!(
                after >= before,
                "counter {name} went back from {before} to {after} {between}"
            );
        }
    }
    for d in &a.devices {
        if let Some(e) = b
            .devices
            .iter()
            .find(|e| e.id == d.id && e.resource == d.resource)
        {
            for (label, x, y) in [
                ("read_bytes", d.read_bytes, e.read_bytes),
                ("write_bytes", d.write_bytes, e.write_bytes),
                ("requests", d.requests, e.requests),
            ] {
                if let (Some(x), Some(y)) = (x, y) {
                    ensure!(
                        y >= x,
                        "device {} {label} went back from {x} to {y} {between}",
                        d.id
                    );
                }
            }
        }
    }
    Ok(())
}

async fn before_start(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let stats = sample(&*vm, "before start").await?;
    consistent(&stats, "before start")?;
    ensure!(
        stats.uptime == Duration::ZERO,
        "uptime before start is {:?}; expected zero",
        stats.uptime
    );
    Ok(())
}

async fn uptime_advances(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let started = tokio::time::Instant::now();
    vm.start().await.must("start")?;
    let a = sample(&*vm, "while running").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = sample(&*vm, "300 ms later").await?;
    let wall = started.elapsed();
    consistent(&a, "while running")?;
    consistent(&b, "while running")?;
    not_backwards(&a, &b, "while running")?;
    let moved = b.uptime.saturating_sub(a.uptime);
    ensure!(
        moved >= Duration::from_millis(200),
        "uptime moved {moved:?} in 300 ms of running (from {:?} to {:?})",
        a.uptime,
        b.uptime
    );
    ensure!(
        b.uptime <= wall + Duration::from_millis(50),
        "uptime {:?} is more than the {wall:?} since start was called",
        b.uptime
    );
    Ok(())
}

async fn processor_matches_config(ctx: Ctx) -> Step {
    let mut config = ctx.config();
    config.vcpus = 2;
    let vm = super::support::create_with(&ctx, config).await?;
    vm.start().await.must("start with 2 vCPUs")?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = sample(&*vm, "while running with 2 vCPUs").await?;
    consistent(&stats, "while running")?;
    ensure!(
        stats.processor.per_vcpu.len() == 2,
        "stats list runtime for {} vCPUs; the VM has 2",
        stats.processor.per_vcpu.len()
    );
    Ok(())
}

async fn memory_matches_config(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let want = ctx.template().memory_mib * MIB;
    let stats = sample(&*vm, "while running").await?;
    consistent(&stats, "while running")?;
    ensure!(
        stats.memory.assigned_bytes == want,
        "memory assigned_bytes is {}; the config asks for {} MiB ({want} bytes)",
        stats.memory.assigned_bytes,
        ctx.template().memory_mib
    );
    if let Some(resident) = stats.memory.host_resident_bytes {
        ensure!(
            resident <= want + 64 * MIB,
            "host_resident_bytes {resident} is far above the {want} bytes assigned"
        );
    }
    Ok(())
}

async fn while_paused(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    need_pause(&*vm)?;
    vm.pause().await.must("pause")?;
    let a = sample(&*vm, "while paused").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = sample(&*vm, "300 ms later, still paused").await?;
    consistent(&b, "while paused")?;
    not_backwards(&a, &b, "while paused")?;
    ensure!(
        b.uptime > a.uptime,
        "uptime stood still while paused ({:?}); it counts pauses",
        a.uptime
    );
    let ran = b
        .processor
        .total_runtime
        .saturating_sub(a.processor.total_runtime);
    ensure!(
        ran <= Duration::from_millis(30),
        "the vCPUs consumed {ran:?} of processor time in 300 ms while paused"
    );
    if vm.supports_action(Action::Resume) {
        vm.resume().await.must("resume")?;
        let c = sample(&*vm, "after resume").await?;
        not_backwards(&b, &c, "across resume")?;
    }
    Ok(())
}

async fn frozen_after_stop(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let running = sample(&*vm, "while running").await?;
    vm.stop(StopMode::Force).await.must("force stop")?;
    let a = sample(&*vm, "after stop").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = sample(&*vm, "300 ms after stop").await?;
    consistent(&a, "after stop")?;
    not_backwards(&running, &a, "between running and stopped")?;
    ensure!(
        a == b,
        "stats changed after the VM stopped: {a:?} then {b:?}"
    );
    ensure!(
        a.memory.assigned_bytes == running.memory.assigned_bytes,
        "assigned memory changed at stop from {} to {}",
        running.memory.assigned_bytes,
        a.memory.assigned_bytes
    );
    Ok(())
}

async fn every_state(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    consistent(&sample(&*vm, "while created").await?, "while created")?;
    vm.start().await.must("start")?;
    let mut last = sample(&*vm, "while running").await?;
    consistent(&last, "while running")?;
    if vm.supports_action(Action::Pause) {
        vm.pause().await.must("pause")?;
        let s = sample(&*vm, "while paused").await?;
        not_backwards(&last, &s, "from running to paused")?;
        last = s;
        if vm.supports_action(Action::Resume) {
            vm.resume().await.must("resume")?;
            let s = sample(&*vm, "after resume").await?;
            not_backwards(&last, &s, "from paused to running")?;
            last = s;
        }
    }
    if let Some(probe) = vm.guest_probe()
        && vm.state() == State::Running
    {
        probe
            .trigger(uvm_api::GuestAction::Crash)
            .await
            .must("making the guest crash")?;
        let _ = tokio::time::timeout(Duration::from_secs(10), vm.wait()).await;
    } else {
        vm.stop(StopMode::Force).await.must("force stop")?;
    }
    let s = sample(&*vm, "after the guest crashed (or was stopped)").await?;
    consistent(&s, "after the exit")?;
    not_backwards(&last, &s, "across the exit")
}

super::check!(
    Stats,
    stats_before_start,
    "stats work before start, with zero uptime and a consistent processor total",
    before_start
);

super::check!(
    Stats,
    stats_uptime_advances_while_running,
    "uptime advances with wall time while running and never exceeds it",
    uptime_advances
);

super::check!(
    Stats,
    stats_processor_matches_config,
    "processor stats list one runtime per configured vCPU, summing to the total",
    processor_matches_config
);

super::check!(
    Stats,
    stats_memory_matches_config,
    "assigned memory is the configured size; resident and available memory are plausible",
    memory_matches_config
);

super::check!(
    Stats,
    stats_while_paused,
    "while paused, stats work, uptime goes on and the vCPUs consume no processor time",
    while_paused
);

super::check!(
    Stats,
    stats_frozen_after_stop,
    "after stop, stats work and freeze: no figure changes, none went backwards",
    frozen_after_stop
);

super::check!(
    Stats,
    stats_in_every_state,
    "stats work in every state and after a guest crash, and monotonic figures never go backwards",
    every_state
);
