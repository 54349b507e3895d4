//! Nothing leaks: threads, file descriptors and tasks after many VMs, open
//! images after a VM or a device is gone, removals left pending by a stop.
//!
//! The thread and file-descriptor checks count what the whole process holds
//! (`/proc/self/task`, `/proc/self/fd`), so they must run alone: they are
//! marked exclusive, and the runner gives them a lock that every other check
//! in the process waits for. They run the cycles on a runtime of their own,
//! with a backend made on it, warm up with one cycle first (so that lazily
//! initialised state is not taken for a leak), let the runtime settle, and
//! compare what is held before and after. There is no tolerance: any thread
//! or descriptor that is new afterwards is reported. Because tests outside
//! the suite may start threads in the same process meanwhile, a leak is only
//! reported if it shows in three attempts in a row; a real leak always does.

use std::path::PathBuf;
use std::time::Duration;

use uvm_api::{Backend, Operation, Resource, State, StopMode};

use super::device::{DeviceKind, Spec, add_claimed, claims, remove_claimed};
use super::network::NicKind;
use super::plug::refuse_add;
use super::procfs::{self, Holdings};
use super::scsi::ScsiKind;
use super::support::{Vm, complete, in_state};
use super::unplug::removable;
use crate::capability::Capability;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::step::{Must, Parts, Step, bail, ensure, fail, skip, unclaimed};

/// VMs per leak measurement.
const CYCLES: u32 = 100;
/// Attempts before a leak is reported.
const ATTEMPTS: u32 = 3;
/// How long what was released may take to go (threads to exit, descriptors to close).
const SETTLE: Duration = Duration::from_secs(3);
/// The kinds of device that hold an image file, each with its fixture number.
const IMAGE_KINDS: [(&dyn DeviceKind, u32); 2] = [(&ScsiKind, 1), (&super::vpmem::VpmemKind, 2)];
/// Time limit of each thread and descriptor leak check (they run 100 cycles, alone).
const LEAK_CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// A runtime of the leak checks' own, whose idle threads go quickly.
fn runtime() -> Step<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(20))
        .enable_all()
        .build()
        .map_err(|e| fail(format!("building a runtime for the leak check: {e}")))
}

/// One create / start / stop / wait cycle.
async fn vm_cycle(ctx: &Ctx, backend: &dyn Backend, n: u32) -> Step {
    let vm = backend
        .create(ctx.config())
        .await
        .must(&format!("create in cycle {n}"))?;
    vm.start().await.must(&format!("start in cycle {n}"))?;
    let mode = if n.is_multiple_of(2) {
        StopMode::Force
    } else {
        StopMode::Graceful {
            timeout: Duration::from_secs(2),
        }
    };
    vm.stop(mode).await.must(&format!("stop in cycle {n}"))?;
    let _ = vm.wait().await;
    Ok(())
}

/// One hot add and remove of a disk and a NIC (where claimed) on `vm`.
async fn device_cycle(ctx: &Ctx, vm: &dyn uvm_api::Uvm, disk: &Spec, nic: &Spec, n: u32) -> Step {
    for (kind, spec) in [(&ScsiKind as &dyn DeviceKind, disk), (&NicKind, nic)] {
        if claims(kind, vm, Operation::Add)? && claims(kind, vm, Operation::Remove)? {
            add_claimed(kind, vm, spec, &format!("add in cycle {n}")).await?;
            let removal = remove_claimed(kind, vm, spec, &format!("remove in cycle {n}")).await?;
            complete(ctx, &removal, &format!("remove in cycle {n}")).await?;
        }
    }
    if let Some(sockets) = vm.vm_socket()
        && vm.supported(uvm_api::Resource::VmSocket, Operation::Add)
    {
        drop(
            sockets
                .listen(9000)
                .await
                .must(&format!("listen in cycle {n}"))?,
        );
    }
    Ok(())
}

/// Waits until nothing is held beyond `before`; returns what still is.
async fn settled(before: &Holdings) -> Step<Holdings> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let now = procfs::holdings().map_err(|e| fail(format!("reading /proc/self: {e}")))?;
        let extra = now.since(before);
        if extra.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(extra);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `work` on a runtime of its own, measuring what the process holds
/// before and after, up to [`ATTEMPTS`] times.
async fn measure<F>(ctx: Ctx, what: &'static str, work: F) -> Step
where
    F: for<'a> Fn(&'a Ctx, &'a dyn Backend, bool) -> futures::future::BoxFuture<'a, Step>
        + Send
        + 'static,
{
    if !procfs::available() {
        return Err(skip(
            "/proc/self is not readable on this host, so threads and descriptors cannot be counted",
        ));
    }
    let outcome = tokio::task::spawn_blocking(move || -> Step {
        let rt = runtime()?;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let result = rt.block_on(async {
                let backend = ctx.factory().make();
                work(&ctx, &*backend, true).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let before = procfs::holdings().map_err(|e| fail(format!("reading /proc/self: {e}")))?;
                work(&ctx, &*backend, false).await?;
                drop(backend);
                settled(&before).await
            });
            match result {
                Ok(extra) if extra.is_empty() => {
                    rt.shutdown_timeout(Duration::from_secs(1));
                    return Ok(());
                }
                Ok(extra) => {
                    last = format!(
                        "after {what}, the process holds {} more than before (attempt {attempt} of {ATTEMPTS}, after waiting {SETTLE:?})",
                        extra.describe()
                    );
                    tracing::info!(check = ctx.check(), "{last}");
                }
                Err(o) => {
                    rt.shutdown_timeout(Duration::from_secs(1));
                    return Err(o);
                }
            }
        }
        rt.shutdown_timeout(Duration::from_secs(1));
        Err(fail(last))
    })
    .await;
    match outcome {
        Ok(step) => step,
        Err(e) if e.is_panic() => Err(fail(format!("the leak measurement panicked: {e}"))),
        Err(e) => Err(fail(format!("the leak measurement was cancelled: {e}"))),
    }
}

async fn no_leaks_after_vm_cycles(ctx: Ctx) -> Step {
    measure(
        ctx,
        "100 create/start/stop cycles",
        |ctx, backend, warm_up| {
            Box::pin(async move {
                let n = if warm_up { 1 } else { CYCLES };
                for i in 0..n {
                    vm_cycle(ctx, backend, i).await?;
                }
                Ok(())
            })
        },
    )
    .await
}

async fn no_leaks_after_device_cycles(ctx: Ctx) -> Step {
    measure(
        ctx,
        "100 hot add/remove cycles of a disk and a NIC",
        |ctx, backend, warm_up| {
            Box::pin(async move {
                let vm = Vm::new(backend.create(ctx.config()).await.must("create")?);
                vm.start().await.must("start")?;
                if claims(&ScsiKind, &*vm, Operation::Add)? {
                    ScsiKind.prepare(&*vm).await?;
                }
                let disk = ScsiKind.fixture(ctx, 1)?;
                let nic = NicKind.fixture(ctx, 1)?;
                let n = if warm_up { 1 } else { CYCLES };
                for i in 0..n {
                    device_cycle(ctx, &*vm, &disk, &nic, i).await?;
                }
                vm.stop(StopMode::Force).await.must("stop")?;
                let _ = vm.wait().await;
                Ok(())
            })
        },
    )
    .await
}

async fn no_task_leaks(ctx: Ctx) -> Step {
    let outcome = tokio::task::spawn_blocking(move || -> Step {
        let rt = runtime()?;
        let result = rt.block_on(async {
            let backend = ctx.factory().make();
            vm_cycle(&ctx, &*backend, 0).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let metrics = tokio::runtime::Handle::current().metrics();
            let before = metrics.num_alive_tasks();
            for i in 0..CYCLES {
                vm_cycle(&ctx, &*backend, i).await?;
            }
            drop(backend);
            let deadline = tokio::time::Instant::now() + SETTLE;
            loop {
                let now = metrics.num_alive_tasks();
                if now <= before {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("after {CYCLES} create/start/stop cycles, {} more tokio tasks are alive than before ({before} then {now})", now - before);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        result
    })
    .await;
    outcome.map_err(|e| fail(format!("the task count failed: {e}")))?
}

/// The images (disks, VPMem) a VM was given, to check none stays open; the
/// kinds whose add the VM does not claim are checked to refuse it instead.
async fn with_images(ctx: &Ctx, vm: &Vm) -> Step<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for (kind, n) in IMAGE_KINDS {
        let spec = kind.fixture(ctx, n)?;
        if !claims(kind, &**vm, Operation::Add)? {
            refuse_add(kind, &**vm, &spec, "adding an image").await?;
            continue;
        }
        kind.prepare(&**vm).await?;
        add_claimed(kind, &**vm, &spec, "adding an image").await?;
        match &spec {
            Spec::Scsi(d) => paths.push(d.path.clone()),
            Spec::Vpmem(d) => paths.push(d.path.clone()),
            _ => {}
        }
    }
    Ok(paths)
}

async fn no_open_images(paths: &[PathBuf], after: &str) -> Step {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut open = Vec::new();
        for path in paths {
            let fds =
                procfs::fds_on(path).map_err(|e| fail(format!("reading /proc/self/fd: {e}")))?;
            if !fds.is_empty() {
                open.push(format!("{} (fds {fds:?})", path.display()));
            }
        }
        if open.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "after {after}, the process still has {} open",
                open.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn images_closed_after_stop(ctx: Ctx) -> Step {
    if !procfs::available() {
        return Err(skip("/proc/self is not readable on this host"));
    }
    // A boot-config disk too, where SCSI adds are claimed: boot devices are
    // added as a shim would add them, so their images close the same way.
    let mut config = ctx.config();
    let mut boot_paths = Vec::new();
    if ctx
        .backend()
        .capabilities()
        .supports(Resource::Scsi, Operation::Add)
    {
        let spec = ScsiKind.fixture(&ctx, 3)?;
        if ScsiKind.boot(&mut config, &spec)
            && let Spec::Scsi(d) = &spec
        {
            boot_paths.push(d.path.clone());
        }
    }
    let vm = super::support::create_with(&ctx, config).await?;
    let mut paths = with_images(&ctx, &vm).await?;
    if paths.is_empty() {
        let adds = IMAGE_KINDS.map(|(kind, _)| Capability::Pair(kind.resource(), Operation::Add));
        return Err(unclaimed(&adds));
    }
    paths.extend(boot_paths);
    vm.start().await.must("start")?;
    if let Some(probe) = vm.guest_probe() {
        for d in probe
            .block_devices()
            .await
            .must("listing the guest's disks")?
        {
            probe
                .read_block(&d.name, 0, 512)
                .await
                .must("reading a disk in the guest")?;
        }
    }
    vm.stop(StopMode::Force).await.must("stop")?;
    no_open_images(&paths, "the VM stopped (its handle still held)").await
}

/// Hot-adds and removes `kind`'s image-backed device `n` on the running
/// `vm`, and fails if its image is still open once the removal completed.
async fn image_closed_after_removal_of(ctx: &Ctx, vm: &Vm, kind: &dyn DeviceKind, n: u32) -> Step {
    let spec = kind.fixture(ctx, n)?;
    removable(kind, &**vm, &spec).await?;
    kind.prepare(&**vm).await?;
    add_claimed(kind, &**vm, &spec, "hot-adding an image-backed device").await?;
    let path = match &spec {
        Spec::Scsi(d) => {
            if let Some(probe) = vm.guest_probe()
                && let Some(g) = super::scsi::guest_disk(probe, (d.controller, d.lun)).await?
            {
                probe
                    .read_block(&g.name, 0, 512)
                    .await
                    .must("reading the disk in the guest")?;
            }
            d.path.clone()
        }
        Spec::Vpmem(d) => d.path.clone(),
        _ => bail!("conformance suite bug: not an image-backed device"),
    };
    let removal = remove_claimed(kind, &**vm, &spec, "removing it").await?;
    complete(ctx, &removal, "removing it").await?;
    no_open_images(
        std::slice::from_ref(&path),
        &format!(
            "the removal of {} {} completed (the VM still runs)",
            kind.noun(),
            kind.id(&spec)
        ),
    )
    .await
}

async fn image_closed_after_removal(ctx: Ctx) -> Step {
    if !procfs::available() {
        return Err(skip("/proc/self is not readable on this host"));
    }
    let vm = in_state(&ctx, State::Running).await?;
    let mut parts = Parts::default();
    for (kind, n) in IMAGE_KINDS {
        parts.part(image_closed_after_removal_of(&ctx, &vm, kind, n).await)?;
    }
    parts.end()
}

/// Removes `kind`'s device 1, drops the handle at once, and waits for the id
/// to free up anyway: re-adding it must succeed within the removal timeout.
async fn dropped_removal_in(ctx: &Ctx, kind: &dyn DeviceKind, state: State) -> Step {
    let vm = in_state(ctx, state).await?;
    let spec = kind.fixture(ctx, 1)?;
    removable(kind, &*vm, &spec).await?;
    kind.prepare(&*vm).await?;
    add_claimed(kind, &*vm, &spec, &format!("adding ({state})")).await?;
    if state == State::Running
        && kind.observable()
        && let Some(probe) = vm.guest_probe()
    {
        // The guest has the device before it is asked to let it go.
        super::device::wait_seen(ctx, kind, probe, &spec, "a hot add").await?;
    }
    drop(remove_claimed(kind, &*vm, &spec, &format!("removing ({state})")).await?);
    let limit = ctx.settings().removal_timeout + Duration::from_secs(1);
    let (readded, last) = super::support::eventually(limit, || async {
        match kind.add(&*vm, &spec).await {
            Some(Ok(())) => Ok((true, String::new())),
            Some(Err(e)) => Ok((false, crate::step::describe(&e))),
            None => Err(fail("conformance suite bug: no manager to add with")),
        }
    })
    .await?;
    ensure!(
        readded,
        "{} {} was removed and its removal handle dropped at once ({state}); re-adding it still failed after {limit:?} (last: {last}); dropping a removal must not cancel it",
        kind.noun(),
        kind.id(&spec)
    );
    Ok(())
}

async fn dropped_removal_not_cancelled(ctx: Ctx) -> Step {
    super::support::created_and_running(|state| dropped_removal_in(&ctx, &ScsiKind, state)).await
}

async fn removals_complete_on_stop(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let mut removals = Vec::new();
    let mut unremovable = Parts::default();
    let mut skipped = Vec::new();
    for (kind, n) in [
        (&ScsiKind as &dyn DeviceKind, 1),
        (&NicKind, 1),
        (&super::vpmem::VpmemKind, 1),
        (&super::shares::VIRTIO_FS, 1),
    ] {
        let spec = kind.fixture(&ctx, n)?;
        match removable(kind, &*vm, &spec).await {
            Ok(()) => {}
            Err(Outcome::Skipped(reason)) => {
                skipped.push(format!("[{}] {reason}", kind.resource()));
                continue;
            }
            other => {
                unremovable.part(other)?;
                continue;
            }
        }
        kind.prepare(&*vm).await?;
        add_claimed(kind, &*vm, &spec, "hot-adding").await?;
        removals.push(remove_claimed(kind, &*vm, &spec, "removing").await?);
    }
    if removals.is_empty() {
        if unremovable.is_empty() {
            return Err(skip(skipped.join("; ")));
        }
        return unremovable.end();
    }
    vm.stop(StopMode::Force)
        .await
        .must("stop right after the removals")?;
    for removal in &removals {
        complete(&ctx, removal, "a stop while removals were pending").await?;
    }
    ensure!(
        removals.iter().all(uvm_api::Removal::is_complete),
        "a removal waited on reports it is not complete"
    );
    Ok(())
}

super::check!(
    Cleanup,
    cleanup_no_thread_or_fd_leak_after_100_vms,
    "after 100 create/start/stop cycles the process holds no more threads or file descriptors than before (runs alone)",
    no_leaks_after_vm_cycles,
    exclusive: true,
    timeout: Some(LEAK_CHECK_TIMEOUT),
);

super::check!(
    Cleanup,
    cleanup_no_thread_or_fd_leak_after_100_hot_plugs,
    "after 100 hot add/remove cycles of a disk and a NIC the process holds no more threads or file descriptors than before (runs alone)",
    no_leaks_after_device_cycles,
    exclusive: true,
    timeout: Some(LEAK_CHECK_TIMEOUT),
);

super::check!(
    Cleanup,
    cleanup_no_task_leak_after_100_vms,
    "after 100 create/start/stop cycles no more tokio tasks are alive than before",
    no_task_leaks,
    exclusive: false,
    timeout: Some(Duration::from_secs(300)),
);

super::check!(
    Cleanup,
    cleanup_images_closed_after_stop,
    "once a VM has stopped, no disk or VPMem image it had stays open in the process",
    images_closed_after_stop
);

super::check!(
    Cleanup,
    cleanup_image_closed_after_removal,
    "once a disk's or a VPMem device's removal completes, its image is no longer open in the process",
    image_closed_after_removal
);

super::check!(
    Cleanup,
    cleanup_dropped_scsi_removal_not_cancelled,
    "dropping a removal handle at once does not cancel the removal: the disk's address frees up anyway, before start and while running",
    dropped_removal_not_cancelled
);

super::check!(
    Cleanup,
    cleanup_pending_removals_complete_on_stop,
    "removals of disks, NICs, VPMem devices and virtio-fs shares still pending when the VM stops complete (they are neither abandoned nor left hanging)",
    removals_complete_on_stop
);
