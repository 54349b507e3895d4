//! `stats` in every state: figures that move while the guest runs, stay
//! consistent with each other and the config, and freeze once it stops.

use std::time::Duration;

use uvm_api::{Action, Operation, Resource, State, Stats, StopMode, Uvm};

use super::device::{DeviceKind, Spec, add_claimed, claims};
use super::scsi::{ScsiKind, guest_disk};
use super::support::{create, eventually, in_state, need_pause};
use crate::ctx::Ctx;
use crate::step::{Must, Step, bail, ensure};

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
    // Time spent Created does not count: uptime runs from start.
    tokio::time::sleep(Duration::from_millis(500)).await;
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

/// Bytes the guest reads from the counted disk in [`every_state`].
const COUNTED_READ: u64 = 4096;

/// Adds disk 1 before start, if the VM claims SCSI adds, so that its device
/// counters can be held to the guest's I/O; returns its spec.
async fn counted_disk(ctx: &Ctx, vm: &dyn Uvm) -> Step<Option<Spec>> {
    if !claims(&ScsiKind, vm, Operation::Add)? {
        return Ok(None);
    }
    let spec = ScsiKind.fixture(ctx, 1)?;
    ScsiKind.prepare(vm).await?;
    add_claimed(&ScsiKind, vm, &spec, "adding a disk to count its I/O").await?;
    Ok(Some(spec))
}

/// The device counters name only devices the VM has (a disk by its
/// address), and the counted disk's counters grew with the guest's reads.
fn counters_follow_io(a: &Stats, b: &Stats, disks: &[String], counted: &str) -> Step {
    for d in &b.devices {
        if d.resource == Some(Resource::Scsi) {
            ensure!(
                disks.contains(&d.id),
                "stats list SCSI device counters under id {:?}; a device counter names its device by the id it was added with (the VM's disks: {disks:?})",
                d.id
            );
        }
    }
    let find = |s: &Stats| {
        s.devices
            .iter()
            .find(|d| d.resource == Some(Resource::Scsi) && d.id == counted)
            .cloned()
    };
    let Some(after) = find(b) else {
        return Ok(());
    };
    let before = find(a).unwrap_or_default();
    if let Some(y) = after.read_bytes {
        let x = before.read_bytes.unwrap_or(0);
        ensure!(
            y >= x + COUNTED_READ,
            "disk {counted}: read_bytes went from {x} to {y} while the guest read {COUNTED_READ} bytes from it"
        );
    }
    if let Some(y) = after.requests {
        let x = before.requests.unwrap_or(0);
        ensure!(
            y > x,
            "disk {counted}: requests stayed at {x} while the guest read {COUNTED_READ} bytes from it"
        );
    }
    Ok(())
}

async fn every_state(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    consistent(&sample(&*vm, "while created").await?, "while created")?;
    let counted = counted_disk(&ctx, &*vm).await?;
    vm.start().await.must("start")?;
    let mut last = sample(&*vm, "while running").await?;
    consistent(&last, "while running")?;
    if let (Some(spec), Some(probe)) = (&counted, vm.guest_probe()) {
        let Spec::Scsi(d) = spec else {
            bail!("conformance suite bug: not a disk");
        };
        let limit = ctx.settings().guest_timeout;
        let (_, seen) = eventually(limit, || async {
            let seen = guest_disk(probe, (d.controller, d.lun)).await?;
            Ok((seen.is_some(), seen))
        })
        .await?;
        if let Some(g) = seen {
            let a = sample(&*vm, "before the guest read the disk").await?;
            probe
                .read_block(&g.name, 0, COUNTED_READ)
                .await
                .must("reading the disk in the guest")?;
            let b = sample(&*vm, "after the guest read the disk").await?;
            not_backwards(&a, &b, "across the guest's read")?;
            let mut disks: Vec<String> = ctx
                .template()
                .devices
                .scsi_disks
                .iter()
                .map(uvm_api::ScsiDisk::address)
                .collect();
            disks.push(d.address());
            counters_follow_io(&a, &b, &disks, &d.address())?;
            last = b;
        }
    }
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
    let crashed = if let Some(probe) = vm.guest_probe()
        && vm.state() == State::Running
    {
        probe
            .trigger(uvm_api::GuestAction::Crash)
            .await
            .must("making the guest crash")?;
        let _ = tokio::time::timeout(Duration::from_secs(10), vm.wait()).await;
        true
    } else {
        vm.stop(StopMode::Force).await.must("force stop")?;
        false
    };
    let s = sample(&*vm, "after the guest crashed (or was stopped)").await?;
    consistent(&s, "after the exit")?;
    not_backwards(&last, &s, "across the exit")?;
    if crashed && vm.state() == State::Stopped {
        // Frozen whoever stopped the VM, the guest too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = sample(&*vm, "300 ms after the guest crashed").await?;
        ensure!(
            s == t,
            "stats changed after the guest crashed and the VM stopped: {s:?} then {t:?}"
        );
    }
    Ok(())
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
