//! Two VMs of one backend side by side, for each manager: a device, a vsock
//! port or a resource setting given to one is not visible in the other and
//! does not change it. Ids are per VM, so the other VM may use the same id
//! at the same time; removing it from one leaves the other's in place.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_api::{Operation, ProcessorLimits, Resource, State, Uvm, VsockListener};

use crate::checks::device::{DeviceKind, add_claimed, claims, expect_unseen, wait_seen};
use crate::checks::plug::{maybe_view, refuse_add, unclaimed_op};
use crate::checks::support::{Vm, complete, create, in_state, probe, reach};
use crate::checks::update::{Update, claimed, in_effect, unclaimed_update};
use crate::ctx::Ctx;
use crate::step::{Must, Parts, Step, ensure, fail};

/// Two VMs in `state`; the first one is made first, so that a backend that
/// does not claim the kind can be found out before the second boots.
async fn pair(ctx: &Ctx, state: State) -> Step<(Vm, Vm)> {
    let first = in_state(ctx, state).await?;
    let second = in_state(ctx, state).await?;
    Ok((first, second))
}

/// A device of `kind` added to one of two running VMs is seen only there;
/// the other takes a device with the same id at the same time; removing the
/// first one's leaves the second one's in place.
pub(crate) async fn device_stays_in_its_vm(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let spec = kind.fixture(&ctx, 1)?;
    {
        let vm = create(&ctx).await?;
        if !claims(kind, &*vm, Operation::Add)? {
            refuse_add(kind, &*vm, &spec, "an add").await?;
            return Err(unclaimed_op(kind, Operation::Add));
        }
    }
    let (a, b) = pair(&ctx, State::Running).await?;
    kind.prepare(&*a).await?;
    kind.prepare(&*b).await?;
    add_claimed(kind, &*a, &spec, "a hot add to the first of two VMs").await?;
    if let Some(view) = maybe_view(kind, &*a) {
        wait_seen(&ctx, kind, view, &spec, "a hot add to the first VM").await?;
    }
    if let Some(view) = maybe_view(kind, &*b) {
        expect_unseen(kind, view, &spec, "a hot add to the other VM").await?;
    }
    // The same id in the second VM, with other contents: ids are per VM.
    let twin = kind.for_another_vm(&kind.variant(&ctx, 1)?);
    add_claimed(
        kind,
        &*b,
        &twin,
        "adding the first VM's id to the second VM (ids are per VM)",
    )
    .await?;
    if let Some(view) = maybe_view(kind, &*b) {
        wait_seen(
            &ctx,
            kind,
            view,
            &twin,
            "adding the same id to the second VM",
        )
        .await?;
    }
    if let Some(view) = maybe_view(kind, &*a) {
        wait_seen(
            &ctx,
            kind,
            view,
            &spec,
            "adding the same id to the second VM (the first VM's device must be as it was)",
        )
        .await?;
    }
    if !claims(kind, &*a, Operation::Remove)? {
        return Ok(());
    }
    let what = format!(
        "removing {} {} from the first VM",
        kind.noun(),
        kind.id(&spec)
    );
    let removal = kind
        .remove(&*a, &spec)
        .await
        .unwrap_or_else(|| {
            Err(uvm_api::Error::not_supported(
                kind.resource(),
                Operation::Remove,
            ))
        })
        .must(&what)?;
    complete(&ctx, &removal, &what).await?;
    if let Some(view) = maybe_view(kind, &*a) {
        expect_unseen(kind, view, &spec, &what).await?;
    }
    if let Some(view) = maybe_view(kind, &*b) {
        wait_seen(
            &ctx,
            kind,
            view,
            &twin,
            &format!("{what} (the second VM's one stays)"),
        )
        .await?;
    }
    Ok(())
}

/// How long a listener that must not get a connection is watched.
const QUIET: Duration = Duration::from_millis(500);
/// How long a guest dial or a host accept may take.
const IO_LIMIT: Duration = Duration::from_secs(10);

/// Serves one guest connection on `listener`: answers `mark` followed by
/// what the guest sent.
async fn answer_once(mut listener: Box<dyn VsockListener>, mark: &'static [u8]) -> Step {
    let mut stream = tokio::time::timeout(IO_LIMIT, listener.accept())
        .await
        .map_err(|_| fail("no guest connection reached the listener"))?
        .must("accepting a guest connection")?;
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .await
        .map_err(|e| fail(format!("reading the guest's payload: {e}")))?;
    let mut reply = mark.to_vec();
    reply.extend(got);
    stream
        .write_all(&reply)
        .await
        .map_err(|e| fail(format!("answering the guest: {e}")))?;
    stream
        .shutdown()
        .await
        .map_err(|e| fail(format!("closing the answer: {e}")))?;
    Ok(())
}

/// Dials `port` from the guest of `vm` and returns the answer.
async fn dial(vm: &dyn Uvm, port: u32, payload: &[u8], who: &str) -> Step<Vec<u8>> {
    tokio::time::timeout(IO_LIMIT, probe(vm)?.dial_host(port, payload))
        .await
        .map_err(|_| {
            fail(format!(
                "the guest of {who} dialling port {port} got no answer"
            ))
        })?
        .must(&format!("the guest of {who} dialling host port {port}"))
}

/// The vsock manager of a VM that claims it.
fn sockets(vm: &Vm) -> Step<&dyn uvm_api::VmSocketManager> {
    vm.vm_socket()
        .ok_or_else(|| fail("supported(vm_socket, add) is true but the VM has no vsock manager"))
}

/// Ports are per VM: both VMs listen on one port, and each guest's
/// connection reaches its own VM's listener; a port only the first VM
/// listens on is not reachable from the second.
async fn vsock_ports_per_vm(ctx: Ctx) -> Step {
    const SHARED: u32 = 7401;
    const ONLY_FIRST: u32 = 7402;
    let r = Resource::VmSocket;
    {
        let vm = create(&ctx).await?;
        if !vm.supported(r, Operation::Add) || vm.vm_socket().is_none() {
            // The vsock checks verify the refusal itself.
            return Err(crate::step::unclaimed(&[
                crate::capability::Capability::Pair(r, Operation::Add),
            ]));
        }
    }
    let (a, b) = pair(&ctx, State::Running).await?;
    let in_a = sockets(&a)?
        .listen(SHARED)
        .await
        .must(&format!("listen({SHARED}) on the first VM"))?;
    let in_b = sockets(&b)?.listen(SHARED).await.must(&format!(
        "listen({SHARED}) on the second VM while the first listens there (ports are per VM)"
    ))?;
    let serve_a = tokio::spawn(answer_once(in_a, b"first:"));
    let serve_b = tokio::spawn(answer_once(in_b, b"second:"));
    let got = dial(&*a, SHARED, b"a", "the first VM").await?;
    ensure!(
        got == b"first:a",
        "the first VM's guest dialling port {SHARED} got {:?}; expected the first VM's listener to answer \"first:a\"",
        String::from_utf8_lossy(&got)
    );
    let got = dial(&*b, SHARED, b"b", "the second VM").await?;
    ensure!(
        got == b"second:b",
        "the second VM's guest dialling port {SHARED} got {:?}; expected the second VM's listener to answer \"second:b\"",
        String::from_utf8_lossy(&got)
    );
    for (task, which) in [(serve_a, "first"), (serve_b, "second")] {
        task.await
            .map_err(|e| fail(format!("the {which} VM's listener task: {e}")))??;
    }
    let mut lonely = sockets(&a)?
        .listen(ONLY_FIRST)
        .await
        .must(&format!("listen({ONLY_FIRST}) on the first VM"))?;
    let crossed = tokio::time::timeout(IO_LIMIT, probe(&*b)?.dial_host(ONLY_FIRST, b"x")).await;
    ensure!(
        !matches!(crossed, Ok(Ok(_))),
        "the second VM's guest reached port {ONLY_FIRST}, where only the first VM listens"
    );
    let stolen = tokio::time::timeout(QUIET, lonely.accept()).await;
    ensure!(
        stolen.is_err(),
        "the first VM's listener on port {ONLY_FIRST} got a connection when only the second VM's guest dialled"
    );
    Ok(())
}

/// What `stats` says of the settings the resource updates make.
async fn settings(vm: &dyn Uvm) -> Step<(u64, Option<ProcessorLimits>, Option<String>)> {
    let stats = vm.stats().await.must("stats")?;
    Ok((
        stats.memory.assigned_bytes,
        stats.processor.limits,
        stats.cpu_group,
    ))
}

/// Memory, processor limits and the CPU group set on one of two VMs (before
/// start and while running) leave the other's as they were.
async fn updates_stay_in_their_vm(ctx: Ctx) -> Step {
    let updates = [
        Update::Memory(ctx.template().memory_mib),
        Update::Processor(ProcessorLimits {
            limit: Some(2500),
            weight: Some(300),
            reservation: Some(100),
        }),
        Update::CpuGroup("uvm-conformance-isolation".into()),
    ];
    let mut parts = Parts::default();
    for state in [State::Created, State::Running] {
        let a = create(&ctx).await?;
        let claimed_any = updates
            .iter()
            .map(|u| claimed(&*a, u))
            .collect::<Step<Vec<bool>>>()?
            .into_iter()
            .any(|c| c);
        if !claimed_any {
            // Each area's own checks verify the refusals.
            parts.part(Err(unclaimed_update(&updates[0])))?;
            parts.part(Err(unclaimed_update(&updates[1])))?;
            parts.part(Err(unclaimed_update(&updates[2])))?;
            continue;
        }
        reach(&*a, state).await?;
        let b = in_state(&ctx, state).await?;
        let before = settings(&*b).await?;
        for update in &updates {
            if !claimed(&*a, update)? {
                continue;
            }
            let what = format!("{} on the first VM while {state}", update.describe());
            if let Update::Memory(_) = update {
                // A size the backend takes, as the memory checks find it.
                let mib = crate::checks::memory::resize(&ctx, &*a, state).await?;
                crate::checks::memory::shows(&ctx, &*a, mib, &what).await?;
            } else {
                update.apply(&*a).await.unwrap_or(Ok(())).must(&what)?;
                in_effect(&*a, update, &what).await?;
            }
            let now = settings(&*b).await?;
            ensure!(
                now == before,
                "after {what}: the second VM's stats changed (memory bytes, limits, group before: {before:?}; after: {now:?})"
            );
        }
        parts.part(Ok(()))?;
    }
    parts.end()
}

/// Every device kind of a manager, for the isolation check of its area.
macro_rules! isolation_check {
    ($name:ident, $kinds:expr, $desc:expr) => {
        $crate::checks::kind_check!(Concurrency, $name, $desc, $kinds, device_stays_in_its_vm);
    };
}

isolation_check!(
    concurrency_scsi_disk_stays_in_its_vm,
    crate::checks::scsi::KINDS,
    "a disk hot-added to one of two running VMs shows only there, the other takes the same address at once, and removing the first leaves the second"
);
isolation_check!(
    concurrency_vpmem_device_stays_in_its_vm,
    crate::checks::vpmem::KINDS,
    "a VPMem device hot-added to one of two running VMs shows only there, the other takes the same slot at once, and removing the first leaves the second"
);
isolation_check!(
    concurrency_nic_stays_in_its_vm,
    crate::checks::network::KINDS,
    "a NIC hot-added to one of two running VMs shows only there, the other takes the same id at once, and removing the first leaves the second"
);
isolation_check!(
    concurrency_share_stays_in_its_vm,
    crate::checks::shares::KINDS,
    "a share added to one of two running VMs shows only there, the other takes the same name at once, and removing the first leaves the second"
);
isolation_check!(
    concurrency_pci_device_stays_in_its_vm,
    crate::checks::pci::KINDS,
    "a PCI device assigned to one of two running VMs shows only there, the other takes the same id at once, and removing the first leaves the second"
);

crate::checks::check!(
    Concurrency,
    concurrency_vsock_ports_are_per_vm,
    "two running VMs listen on one port and each guest reaches its own VM's listener; a port only one VM listens on is unreachable from the other",
    vsock_ports_per_vm
);

crate::checks::check!(
    Concurrency,
    concurrency_resource_updates_stay_in_their_vm,
    "memory, processor limits and the CPU group set on one of two VMs (before start and while running) leave the other's stats as they were",
    updates_stay_in_their_vm
);
