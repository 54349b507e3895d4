//! `supported` answers true exactly for what works: a claimed operation works
//! in every state the table allows (seen from inside the guest where there is
//! a probe); an unclaimed one is `NotSupported` in every state and changes
//! nothing; and no VM claims more than its backend's capabilities.

use uvm_api::{Action, Capabilities, Operation, Resource, State, Uvm};

use super::device::{
    DeviceKind, add_claimed, claims, expect_unseen, remove_claimed, wait_gone, wait_seen,
};
use super::plug::{maybe_view, refuse_add, unclaimed_op};
use super::support::{Before, complete, create, expect_state, in_state, reach, refused};
use super::update::{Update, refused_outside};
use crate::capability::{Capability, OPTIONAL_ACTIONS};
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::step::{Must, Parts, Step, Want, bail, ensure, expect_err, skip, unclaimed};

/// Every state, `Paused` only if the backend can pause.
const STATES: [State; 4] = [
    State::Created,
    State::Running,
    State::Paused,
    State::Stopped,
];

/// A VM in `state`, or `None` if the state cannot be reached (paused without pause).
async fn maybe_in(ctx: &Ctx, state: State) -> Step<Option<super::support::Vm>> {
    match in_state(ctx, state).await {
        Ok(vm) => Ok(Some(vm)),
        Err(Outcome::Skipped(_)) => Ok(None),
        Err(o) => Err(o),
    }
}

/// Whether the VM has the manager for `r`.
fn has_manager(vm: &dyn Uvm, r: Resource) -> bool {
    match r {
        Resource::VPMem => vm.vpmem().is_some(),
        Resource::Scsi => vm.scsi().is_some(),
        Resource::Network => vm.network().is_some(),
        Resource::Vsmb | Resource::Plan9 | Resource::VirtioFs => vm.shared_folders().is_some(),
        Resource::Pci => vm.pci().is_some(),
        Resource::VmSocket => vm.vm_socket().is_some(),
        Resource::Memory => vm.memory().is_some(),
        Resource::Processor => vm.processor().is_some(),
        Resource::CpuGroup => vm.cpu_group().is_some(),
        _ => false,
    }
}

/// Every (resource, operation) pair there is, defined or not.
fn every_pair() -> impl Iterator<Item = (Resource, Operation)> {
    Resource::ALL
        .into_iter()
        .flat_map(|r| Operation::ALL.into_iter().map(move |op| (r, op)))
}

async fn within_capabilities(ctx: Ctx) -> Step {
    let caps: Capabilities = ctx.backend().capabilities();
    let vm = create(&ctx).await?;
    for (r, op) in every_pair() {
        ensure!(
            !vm.supported(r, op) || caps.supports(r, op),
            "supported({r}, {op}) is true but the backend's capabilities do not list it: a VM may do less than its backend, never more"
        );
    }
    for a in OPTIONAL_ACTIONS {
        ensure!(
            !vm.supports_action(a) || caps.actions.contains(&a),
            "supports_action({a}) is true but the backend's capabilities do not list {a}"
        );
    }
    for (r, op) in &caps.resources {
        ensure!(
            r.defined_operations().contains(op),
            "the backend's capabilities list ({r}, {op}), which the contract does not define"
        );
    }
    Ok(())
}

async fn undefined_pairs(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let caps = ctx.backend().capabilities();
    let all = Capabilities::all_resources();
    for (r, op) in every_pair() {
        if all.contains(&(r, op)) {
            continue;
        }
        ensure!(
            !vm.supported(r, op),
            "supported({r}, {op}) is true, but the contract defines no {op} for {r}"
        );
        ensure!(
            !caps.supports(r, op),
            "the capabilities list ({r}, {op}), which the contract does not define"
        );
    }
    Ok(())
}

async fn claims_have_managers(ctx: Ctx) -> Step {
    for state in STATES {
        let Some(vm) = maybe_in(&ctx, state).await? else {
            continue;
        };
        for (r, op) in Capabilities::all_resources() {
            ensure!(
                !vm.supported(r, op) || has_manager(&*vm, r),
                "supported({r}, {op}) is true while {state} but the VM provides no {r} manager"
            );
        }
    }
    Ok(())
}

async fn stable_answers(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let answers = |vm: &dyn Uvm| {
        let pairs: Vec<bool> = every_pair().map(|(r, op)| vm.supported(r, op)).collect();
        let actions: Vec<bool> = Action::ALL.iter().map(|a| vm.supports_action(*a)).collect();
        (pairs, actions)
    };
    let first = answers(&*vm);
    vm.start().await.must("start")?;
    let mut seen = vec![(State::Running, answers(&*vm))];
    if vm.supports_action(Action::Pause) {
        vm.pause().await.must("pause")?;
        seen.push((State::Paused, answers(&*vm)));
    }
    vm.stop(uvm_api::StopMode::Force).await.must("stop")?;
    seen.push((State::Stopped, answers(&*vm)));
    for (state, now) in seen {
        if now != first {
            let changed: Vec<String> = every_pair()
                .zip(first.0.iter().zip(&now.0))
                .filter(|(_, (a, b))| a != b)
                .map(|((r, op), (a, b))| format!("({r}, {op}) {a} -> {b}"))
                .collect();
            bail!(
                "supported/supports_action answers changed between created and {state}: {}",
                if changed.is_empty() {
                    "supports_action differs".into()
                } else {
                    changed.join(", ")
                }
            );
        }
    }
    Ok(())
}

/// `(kind, add)`: works cold and hot if claimed; `NotSupported` in every state otherwise.
pub(crate) async fn device_add(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let vm = create(&ctx).await?;
    if claims(kind, &*vm, Operation::Add)? {
        let cold = kind.fixture(&ctx, 1)?;
        let hot = kind.fixture(&ctx, 2)?;
        kind.prepare(&*vm).await?;
        add_claimed(kind, &*vm, &cold, "a cold plug (supported(add) is true)").await?;
        vm.start().await.must("start")?;
        add_claimed(kind, &*vm, &hot, "a hot add (supported(add) is true)").await?;
        if let Some(probe) = maybe_view(kind, &*vm) {
            wait_seen(&ctx, kind, probe, &cold, "a claimed cold plug").await?;
            wait_seen(&ctx, kind, probe, &hot, "a claimed hot add").await?;
        }
        return Ok(());
    }
    for state in STATES {
        let Some(vm) = maybe_in(&ctx, state).await? else {
            continue;
        };
        let spec = kind.fixture(&ctx, 1)?;
        refuse_add(kind, &*vm, &spec, &format!("an add while {state}")).await?;
        if state == State::Created {
            vm.start().await.must("start after a refused cold plug")?;
            if let Some(probe) = maybe_view(kind, &*vm) {
                expect_unseen(kind, probe, &spec, "a refused cold plug and start").await?;
            }
        }
    }
    Err(unclaimed_op(kind, Operation::Add))
}

/// `(kind, remove)`: works cold and hot if claimed; `NotSupported` in every state otherwise,
/// with the device staying where there is one.
pub(crate) async fn device_remove(ctx: Ctx, kind: &'static dyn DeviceKind) -> Step {
    let r = kind.resource();
    let probe_vm = create(&ctx).await?;
    let can_add = claims(kind, &*probe_vm, Operation::Add)?;
    if claims(kind, &*probe_vm, Operation::Remove)? {
        if !can_add {
            for state in [State::Created, State::Running] {
                let vm = in_state(&ctx, state).await?;
                let spec = kind.fixture(&ctx, 7)?;
                let result = kind
                    .remove(&*vm, &spec)
                    .await
                    .unwrap_or_else(|| Ok(uvm_api::Removal::completed(r, "")));
                expect_err(
                    &format!("removing an unknown {} while {state}", kind.noun()),
                    result,
                    Want::NotFound(r),
                )?;
            }
            return Err(skip(format!(
                "supported({r}, add) is false, so no {} can be added to be removed",
                kind.noun()
            )));
        }
        let vm = create(&ctx).await?;
        let cold = kind.fixture(&ctx, 1)?;
        let hot = kind.fixture(&ctx, 2)?;
        kind.prepare(&*vm).await?;
        add_claimed(kind, &*vm, &cold, "a cold plug").await?;
        let removal = remove_claimed(
            kind,
            &*vm,
            &cold,
            "a cold remove (supported(remove) is true)",
        )
        .await?;
        complete(&ctx, &removal, "a cold remove").await?;
        vm.start().await.must("start")?;
        add_claimed(kind, &*vm, &hot, "a hot add").await?;
        let probe = maybe_view(kind, &*vm);
        if let Some(p) = probe {
            expect_unseen(kind, p, &cold, "a cold plug and cold remove").await?;
            wait_seen(&ctx, kind, p, &hot, "a hot add").await?;
        }
        let removal =
            remove_claimed(kind, &*vm, &hot, "a hot remove (supported(remove) is true)").await?;
        complete(&ctx, &removal, "a hot remove").await?;
        if let Some(p) = probe {
            wait_gone(&ctx, kind, p, &hot, "a claimed hot remove").await?;
        }
        return Ok(());
    }
    for state in STATES {
        let vm = create(&ctx).await?;
        let spec = kind.fixture(&ctx, 1)?;
        if can_add {
            kind.prepare(&*vm).await?;
            add_claimed(kind, &*vm, &spec, "a cold plug").await?;
        }
        match reach(&*vm, state).await {
            Err(Outcome::Skipped(_)) => continue,
            other => other?,
        }
        let before = Before::take(&*vm).await?;
        let what = format!("removing {} {} while {state}", kind.noun(), kind.id(&spec));
        refused(
            &*vm,
            &before,
            &what,
            r,
            Operation::Remove,
            kind.remove(&*vm, &spec).await,
        )
        .await?;
        if can_add
            && state == State::Running
            && let Some(p) = maybe_view(kind, &*vm)
        {
            wait_seen(&ctx, kind, p, &spec, "a refused remove").await?;
        }
    }
    Err(unclaimed_op(kind, Operation::Remove))
}

async fn vm_socket_add(ctx: Ctx) -> Step {
    let r = Resource::VmSocket;
    let vm = create(&ctx).await?;
    if vm.supported(r, Operation::Add) {
        let Some(m) = vm.vm_socket() else {
            bail!("supported(vm_socket, add) is true but the VM has no socket manager");
        };
        let created = m.listen(7000).await.must("listen while created")?;
        vm.start().await.must("start")?;
        let running = m.listen(7001).await.must("listen while running")?;
        if let Some(p) = vm.guest_probe() {
            p.serve_echo(7002)
                .await
                .must("starting a guest echo server")?;
            let mut s = m.connect(7002).await.must("connect while running")?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let io = |e: std::io::Error| {
                crate::step::fail(format!("talking to the guest echo server: {e}"))
            };
            s.write_all(b"ping").await.map_err(io)?;
            s.shutdown().await.map_err(io)?;
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.map_err(io)?;
            ensure!(
                back == b"ping",
                "the guest echo server answered {back:?} to \"ping\""
            );
        }
        if vm.supports_action(Action::Pause) {
            vm.pause().await.must("pause")?;
            let _paused = m.listen(7003).await.must("listen while paused")?;
        }
        drop((created, running));
        return Ok(());
    }
    for state in STATES {
        let Some(vm) = maybe_in(&ctx, state).await? else {
            continue;
        };
        let Some(m) = vm.vm_socket() else {
            continue;
        };
        let before = Before::take(&*vm).await?;
        let listen = m.listen(7010).await.map(|_| ());
        refused(
            &*vm,
            &before,
            &format!("listen while {state}"),
            r,
            Operation::Add,
            Some(listen),
        )
        .await?;
        let connect = m.connect(7011).await.map(|_| ());
        refused(
            &*vm,
            &before,
            &format!("connect while {state}"),
            r,
            Operation::Add,
            Some(connect),
        )
        .await?;
    }
    Err(unclaimed(&[Capability::Pair(r, Operation::Add)]))
}

/// `update` works before start and while running, and is refused while
/// paused and after stop; all of it ends unclaimed if the VM does not claim it.
async fn update(ctx: &Ctx, update: Update) -> Step {
    let mut parts = Parts::default();
    for state in [State::Created, State::Running] {
        parts.part(super::update::works_in(ctx, state, &update).await.map(drop))?;
    }
    parts.part(refused_outside(ctx, &update).await)?;
    parts.end()
}

async fn memory_update(ctx: Ctx) -> Step {
    let mut parts = Parts::default();
    parts.part(super::memory::before_start(ctx.clone()).await)?;
    parts.part(super::memory::while_running(ctx.clone()).await)?;
    parts.part(refused_outside(&ctx, &Update::Memory(ctx.template().memory_mib)).await)?;
    parts.end()
}

async fn processor_update(ctx: Ctx) -> Step {
    let limits = uvm_api::ProcessorLimits {
        weight: Some(300),
        ..Default::default()
    };
    update(&ctx, Update::Processor(limits)).await
}

async fn cpu_group_update(ctx: Ctx) -> Step {
    update(&ctx, Update::CpuGroup("uvm-conformance-t".into())).await
}

/// An optional action: works where the table allows it if claimed;
/// `ActionNotSupported` in every state otherwise, changing nothing.
async fn action(ctx: Ctx, action: Action) -> Step {
    let vm = create(&ctx).await?;
    if vm.supports_action(action) {
        let ready = match action {
            Action::Pause => State::Running,
            _ => State::Paused,
        };
        if ready == State::Paused && !vm.supports_action(Action::Pause) {
            reach(&*vm, State::Running).await?;
            let what = format!("{action} while running");
            expect_err(
                &what,
                super::lifecycle::act(&ctx, &*vm, action).await,
                Want::InvalidState(State::Running),
            )?;
            return Err(skip(format!(
                "{action} is claimed but the backend cannot pause, so it cannot be exercised"
            )));
        }
        reach(&*vm, ready).await?;
        super::lifecycle::act(&ctx, &*vm, action)
            .await
            .must(&format!("{action} (supports_action is true)"))?;
        let want = if action == Action::Resume {
            State::Running
        } else {
            State::Paused
        };
        expect_state(&*vm, want, &action.to_string())?;
        if action == Action::Save {
            let dest = ctx.scratch().join("snapshot");
            ensure!(
                dest.exists(),
                "save returned Ok but wrote nothing at {}",
                dest.display()
            );
        }
        return Ok(());
    }
    for state in STATES {
        let Some(vm) = maybe_in(&ctx, state).await? else {
            continue;
        };
        let before = Before::take(&*vm).await?;
        let what = format!("{action} while {state} (supports_action({action}) is false)");
        expect_err(
            &what,
            super::lifecycle::act(&ctx, &*vm, action).await,
            Want::ActionNotSupported(action),
        )?;
        before.unchanged(&*vm, &what).await?;
    }
    let dest = ctx.scratch().join("snapshot");
    ensure!(
        !dest.exists() || action != Action::Save,
        "a refused save wrote {}",
        dest.display()
    );
    Err(unclaimed(&[Capability::Action(action)]))
}

async fn pause(ctx: Ctx) -> Step {
    action(ctx, Action::Pause).await
}

async fn resume(ctx: Ctx) -> Step {
    action(ctx, Action::Resume).await
}

async fn save(ctx: Ctx) -> Step {
    action(ctx, Action::Save).await
}

/// `restore` of what is no snapshot (a missing path, a file of other bytes)
/// gives an error and no VM; a backend that does not claim restore gives
/// `ActionNotSupported { save }` for it, whatever the path.
async fn restore_refused(ctx: Ctx) -> Step {
    let backend = ctx.backend().clone();
    let claimed = backend.capabilities().restore;
    let missing = ctx.scratch().join("no-snapshot-here");
    let junk = ctx.scratch().join("not-a-snapshot");
    std::fs::write(&junk, b"these bytes are no snapshot")
        .map_err(|e| crate::step::fail(format!("writing {}: {e}", junk.display())))?;
    for (what, path) in [
        ("a missing path", &missing),
        ("a file that is no snapshot", &junk),
    ] {
        let result = backend.restore(path).await.map(super::support::Vm::new);
        let what = format!("restore from {what}");
        if claimed {
            ensure!(result.is_err(), "{what} succeeded");
        } else {
            expect_err(
                &format!("{what} (the backend's capabilities say restore: false)"),
                result.map(|_| ()),
                Want::ActionNotSupported(Action::Save),
            )?;
        }
    }
    crate::step::verdict(claimed, &[Capability::Restore])
}

/// Every guest OS the backend says it runs can be created from the template
/// adapted to it (a Windows guest takes no kernel, initrd or command line).
async fn claimed_guest_os_creates(ctx: Ctx) -> Step {
    let backend = ctx.backend().clone();
    let mut claimed = 0;
    for os in [uvm_api::GuestOs::Linux, uvm_api::GuestOs::Windows] {
        if !backend.supports_guest_os(os) {
            continue;
        }
        claimed += 1;
        let mut config = ctx.config();
        config.guest_os = os;
        if os == uvm_api::GuestOs::Windows {
            config.kernel = None;
            config.initrd = None;
            config.cmdline.clear();
        }
        let vm = super::support::create_with(&ctx, config)
            .await
            .map_err(|o| {
                crate::step::fail(format!(
                    "supports_guest_os({os}) is true, but creating a {os} VM failed: {}",
                    o.message().unwrap_or_default()
                ))
            })?;
        expect_state(&*vm, State::Created, &format!("creating a {os} VM"))?;
    }
    ensure!(claimed > 0, "supports_guest_os is false for every guest OS");
    Ok(())
}

/// What a per-resource add check asserts.
const ADD: &str = "claimed: adding works before start and while running, and the guest sees it; unclaimed: NotSupported in every state, nothing changed";
/// What a per-resource remove check asserts.
const REMOVE: &str = "claimed: removing works before start and while running, and the guest lets go; unclaimed: NotSupported in every state, the device stays";

super::check!(
    Truthfulness,
    truthfulness_supported_within_capabilities,
    "no VM claims a pair or action its backend's capabilities lack, and the capabilities list only defined pairs",
    within_capabilities
);

super::check!(
    Truthfulness,
    truthfulness_undefined_pairs_unsupported,
    "supported is false for every pair the contract does not define",
    undefined_pairs
);

super::check!(
    Truthfulness,
    truthfulness_claims_have_managers,
    "in every state, a claimed pair comes with its manager",
    claims_have_managers
);

super::check!(
    Truthfulness,
    truthfulness_answers_stable_across_states,
    "supported and supports_action give the same answers in every state",
    stable_answers
);

super::kind_check!(
    Truthfulness,
    truthfulness_vpmem_add,
    ADD,
    super::vpmem::KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_vpmem_remove,
    REMOVE,
    super::vpmem::KINDS,
    device_remove
);

super::kind_check!(
    Truthfulness,
    truthfulness_scsi_add,
    ADD,
    super::scsi::KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_scsi_remove,
    REMOVE,
    super::scsi::KINDS,
    device_remove
);

super::kind_check!(
    Truthfulness,
    truthfulness_network_add,
    ADD,
    super::network::KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_network_remove,
    REMOVE,
    super::network::KINDS,
    device_remove
);

super::kind_check!(
    Truthfulness,
    truthfulness_vsmb_add,
    ADD,
    super::shares::VSMB_KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_vsmb_remove,
    REMOVE,
    super::shares::VSMB_KINDS,
    device_remove
);

super::kind_check!(
    Truthfulness,
    truthfulness_pci_add,
    ADD,
    super::pci::KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_pci_remove,
    REMOVE,
    super::pci::KINDS,
    device_remove
);

super::kind_check!(
    Truthfulness,
    truthfulness_plan9_add,
    ADD,
    super::shares::PLAN9_KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_plan9_remove,
    REMOVE,
    super::shares::PLAN9_KINDS,
    device_remove
);

super::kind_check!(
    Truthfulness,
    truthfulness_virtio_fs_add,
    ADD,
    super::shares::VIRTIO_FS_KINDS,
    device_add
);

super::kind_check!(
    Truthfulness,
    truthfulness_virtio_fs_remove,
    REMOVE,
    super::shares::VIRTIO_FS_KINDS,
    device_remove
);

super::check!(
    Truthfulness,
    truthfulness_vm_socket_add,
    "claimed: listen works before start, while running and paused, connect while running; unclaimed: both NotSupported in every state",
    vm_socket_add
);

super::check!(
    Truthfulness,
    truthfulness_memory_update,
    "claimed: memory updates take effect before start and while running; unclaimed: NotSupported in every state",
    memory_update
);

super::check!(
    Truthfulness,
    truthfulness_processor_update,
    "claimed: processor updates work before start and while running; unclaimed: NotSupported in every state",
    processor_update
);

super::check!(
    Truthfulness,
    truthfulness_cpu_group_update,
    "claimed: CPU group updates work before start and while running; unclaimed: NotSupported in every state",
    cpu_group_update
);

super::check!(
    Truthfulness,
    truthfulness_action_pause,
    "claimed: pause works while running; unclaimed: ActionNotSupported in every state, nothing changed",
    pause
);

super::check!(
    Truthfulness,
    truthfulness_action_resume,
    "claimed: resume works while paused; unclaimed: ActionNotSupported in every state, nothing changed",
    resume
);

super::check!(
    Truthfulness,
    truthfulness_action_save,
    "claimed: save works while paused and writes the snapshot; unclaimed: ActionNotSupported in every state, writing nothing",
    save
);

super::check!(
    Truthfulness,
    truthfulness_unclaimed_restore_refused,
    "restore of a missing path or a file that is no snapshot gives an error and no VM; unclaimed: ActionNotSupported { save }",
    restore_refused
);

super::check!(
    Truthfulness,
    truthfulness_claimed_guest_os_creates,
    "a VM of every guest OS the backend says it runs can be created",
    claimed_guest_os_creates
);
