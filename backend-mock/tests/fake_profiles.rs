//! Capability profiles: what is off is `NotSupported` everywhere and changes
//! nothing, what is on works (the truthfulness rule).
#![cfg(test)]

mod support;

use std::path::Path;

use support::*;
use uvm_api::{
    Action, Backend, Capabilities, Error, Operation, PciDevice, ProcessorLimits, Resource,
    ShareKind, State, StopMode, StopReason, Uvm, VpmemController,
};
use uvm_backend_mock::{FakeBackend, FakeUvm, Profile};

fn assert_not_supported<T: std::fmt::Debug>(
    result: uvm_api::Result<T>,
    resource: Resource,
    operation: Operation,
) {
    match result {
        Err(Error::NotSupported {
            resource: r,
            operation: o,
        }) => assert_eq!((r, o), (resource, operation)),
        other => panic!("expected NotSupported {operation} {resource}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_disabled_operation_is_not_supported_in_every_state_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 4096);
    let profile = Profile::all().without(Resource::Scsi, Operation::Add);
    let b = backend_with(profile);
    for state in STATES {
        let vm = in_state_with(&b, "ro-scsi", state).await;
        assert!(!vm.supported(Resource::Scsi, Operation::Add));
        assert!(vm.supported(Resource::Scsi, Operation::Remove));
        let scsi = vm.scsi().expect("remove is still on");
        let before = vm.guest_view();
        assert_not_supported(scsi.add_controller(0).await, Resource::Scsi, Operation::Add);
        assert_not_supported(
            scsi.add_disk(disk(0, 0, &img)).await,
            Resource::Scsi,
            Operation::Add,
        );
        assert_eq!(vm.guest_view(), before);
        assert_eq!(vm.state(), state);
        // Remove is on: it answers by state and by what exists.
        let removed = scsi.remove_disk(0, 0).await;
        if state.check(Action::ChangeDevices).is_ok() {
            assert_kind(removed, "not_found");
        } else {
            assert_invalid_state(removed, state);
        }
    }
}

#[tokio::test]
async fn the_empty_profile_has_no_managers_and_no_optional_actions() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(Profile::none());
    assert_eq!(b.capabilities(), Capabilities::default());
    // Paused is reached with pause alone switched on.
    let pause_only = backend_with(Profile::none().with_action(Action::Pause));
    for state in STATES {
        let vm = if state == State::Paused {
            in_state_with(&pause_only, "bare", state).await
        } else {
            in_state_with(&b, "bare", state).await
        };
        assert!(vm.scsi().is_none());
        assert!(vm.vpmem().is_none());
        assert!(vm.network().is_none());
        assert!(vm.pci().is_none());
        assert!(vm.vm_socket().is_none());
        assert!(vm.shared_folders().is_none());
        assert!(vm.memory().is_none());
        assert!(vm.processor().is_none());
        assert!(vm.cpu_group().is_none());
        for (r, op) in Capabilities::all_resources() {
            assert!(!vm.supported(r, op), "{op} {r}");
        }
        assert!(vm.supports_action(Action::Start) && vm.supports_action(Action::Stop));
        for action in [Action::Resume, Action::Save] {
            assert!(!vm.supports_action(action));
        }
        if state == State::Paused {
            assert_invalid_state(vm.pause().await, state);
        } else {
            assert!(!vm.supports_action(Action::Pause));
            match vm.pause().await {
                Err(Error::ActionNotSupported { action }) => assert_eq!(action, Action::Pause),
                other => panic!("{other:?}"),
            }
        }
        assert_kind(vm.resume().await, "action_not_supported");
        assert_kind(vm.save(&dir.path().join("s")).await, "action_not_supported");
        assert_eq!(vm.state(), state);
        assert!(!dir.path().join("s").exists());
    }
    let vm = in_state_with(&b, "bare", State::Running).await;
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Shutdown);
}

#[tokio::test]
async fn undefined_pairs_are_never_supported() {
    let vm = running("undef").await;
    assert!(!vm.supported(Resource::VmSocket, Operation::Remove));
    assert!(!vm.supported(Resource::Scsi, Operation::Update));
    assert!(!vm.supported(Resource::Memory, Operation::Add));
    assert!(!vm.supports_action(Action::ChangeDevices));
}

#[tokio::test]
async fn boot_devices_need_their_capability() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("boot")
        .nic(nic("n", "02:00:00:00:00:01"))
        .share(share(ShareKind::Vsmb, "s", dir.path()))
        .build()
        .unwrap();
    let b = backend_with(Profile::all().without(Resource::Vsmb, Operation::Add));
    match b.create(cfg.clone()).await {
        Err(Error::NotSupported {
            resource,
            operation,
        }) => assert_eq!((resource, operation), (Resource::Vsmb, Operation::Add)),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("created with an unsupported boot share"),
    }
    let b = backend_with(Profile::all().without(Resource::Scsi, Operation::Add));
    assert_kind(
        b.create_fake(config("c").scsi_controllers(1).build().unwrap())
            .await,
        "not_supported",
    );
    let vm = backend().create_fake(cfg).await.unwrap();
    assert_eq!(vm.guest_view().shares.len(), 1);
    assert_eq!(vm.guest_view().nics.len(), 1);
}

#[tokio::test]
async fn share_kinds_are_switched_separately() {
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::none()
        .with(Resource::Plan9, Operation::Add)
        .with(Resource::Plan9, Operation::Remove);
    let vm = backend_with(profile)
        .create_fake(config("kinds").build().unwrap())
        .await
        .unwrap();
    vm.start().await.unwrap();
    let shares = vm.shared_folders().expect("9p is on");
    assert_not_supported(
        shares
            .add_share(share(ShareKind::VirtioFs, "a", dir.path()))
            .await,
        Resource::VirtioFs,
        Operation::Add,
    );
    assert_not_supported(
        shares.remove_share(ShareKind::Vsmb, "a").await,
        Resource::Vsmb,
        Operation::Remove,
    );
    assert!(vm.guest_view().shares.is_empty());
    shares
        .add_share(share(ShareKind::Plan9, "a", dir.path()))
        .await
        .unwrap();
    assert_eq!(vm.guest_view().shares.len(), 1);
}

#[tokio::test]
async fn restore_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let vm = in_state("save", State::Paused).await;
    let snap = dir.path().join("snap.json");
    vm.save(&snap).await.unwrap();
    let b = backend_with(Profile::all().with_restore(false));
    assert!(!b.capabilities().restore);
    match b.restore(&snap).await {
        Err(Error::ActionNotSupported { action }) => assert_eq!(action, Action::Save),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("restored without restore"),
    }
}

/// Calls `operation` on `resource` with arguments that are valid but name
/// nothing existing for removals. `None` if the manager is absent.
async fn call(
    vm: &FakeUvm,
    resource: Resource,
    operation: Operation,
    dir: &Path,
) -> Option<uvm_api::Result<()>> {
    use Operation::{Add, Remove, Update};
    let share_kind = match resource {
        Resource::VirtioFs => Some(ShareKind::VirtioFs),
        Resource::Plan9 => Some(ShareKind::Plan9),
        Resource::Vsmb => Some(ShareKind::Vsmb),
        _ => None,
    };
    Some(match (resource, operation) {
        (Resource::Scsi, Add) => vm.scsi()?.add_controller(1).await,
        (Resource::Scsi, Remove) => vm.scsi()?.remove_disk(0, 0).await.map(drop),
        (Resource::VPMem, Add) => {
            vm.vpmem()?
                .add_controller(VpmemController {
                    max_devices: 1,
                    max_size_bytes: 1,
                })
                .await
        }
        (Resource::VPMem, Remove) => vm.vpmem()?.remove_device(0).await.map(drop),
        (Resource::Network, Add) => vm.network()?.add_nic(nic("n", "02:00:00:00:00:01")).await,
        (Resource::Network, Remove) => vm.network()?.remove_nic("n").await.map(drop),
        (_, Add) if share_kind.is_some() => {
            let kind = share_kind?;
            vm.shared_folders()?.add_share(share(kind, "s", dir)).await
        }
        (_, Remove) if share_kind.is_some() => {
            let kind = share_kind?;
            vm.shared_folders()?.remove_share(kind, "s").await.map(drop)
        }
        (Resource::Pci, Add) => {
            vm.pci()?
                .add_device(PciDevice {
                    id: "p".into(),
                    host_path: dir.to_path_buf(),
                    virtual_function: None,
                })
                .await
        }
        (Resource::Pci, Remove) => vm.pci()?.remove_device("p").await.map(drop),
        (Resource::VmSocket, Add) => vm.vm_socket()?.listen(1).await.map(drop),
        (Resource::Memory, Update) => vm.memory()?.update_memory(1024).await,
        (Resource::Processor, Update) => {
            vm.processor()?
                .update_limits(ProcessorLimits {
                    weight: Some(10),
                    ..Default::default()
                })
                .await
        }
        (Resource::CpuGroup, Update) => vm.cpu_group()?.set_cpu_group("g").await,
        other => panic!("no call for {other:?}"),
    })
}

fn has_manager(vm: &FakeUvm, resource: Resource) -> bool {
    match resource {
        Resource::Scsi => vm.scsi().is_some(),
        Resource::VPMem => vm.vpmem().is_some(),
        Resource::Network => vm.network().is_some(),
        Resource::Pci => vm.pci().is_some(),
        Resource::VmSocket => vm.vm_socket().is_some(),
        Resource::VirtioFs | Resource::Plan9 | Resource::Vsmb => vm.shared_folders().is_some(),
        Resource::Memory => vm.memory().is_some(),
        Resource::Processor => vm.processor().is_some(),
        Resource::CpuGroup => vm.cpu_group().is_some(),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn random_profiles_are_truthful() {
    let mut seen_on = 0;
    let mut seen_off = 0;
    for seed in 0..24 {
        let profile = Profile::random(seed);
        let b = FakeBackend::with_profile(profile.clone());
        assert_eq!(b.capabilities(), profile.capabilities());
        for state in [State::Created, State::Running] {
            let vm = in_state_with(&b, "rnd", state).await;
            // Removals first so that they find nothing to remove.
            let mut pairs: Vec<_> = Capabilities::all_resources().into_iter().collect();
            pairs.sort_by_key(|(_, op)| *op != Operation::Remove);
            for (r, op) in pairs {
                let dir = tempfile::tempdir().unwrap();
                let supported = vm.supported(r, op);
                assert_eq!(supported, profile.allows(r, op));
                match call(&vm, r, op, dir.path()).await {
                    None => assert!(
                        !supported,
                        "seed {seed}: {op} {r} supported without manager"
                    ),
                    Some(Err(Error::NotSupported { .. })) => {
                        assert!(!supported, "seed {seed}: {op} {r} refused");
                        seen_off += 1;
                    }
                    Some(Ok(())) | Some(Err(Error::NotFound { .. })) => {
                        assert!(supported, "seed {seed}: {op} {r} worked though unsupported");
                        seen_on += 1;
                    }
                    Some(Err(e)) => panic!("seed {seed}: {op} {r} in {state}: {e}"),
                }
                assert_eq!(
                    has_manager(&vm, r),
                    match r {
                        Resource::VirtioFs | Resource::Plan9 | Resource::Vsmb => profile
                            .allows_any(&[Resource::VirtioFs, Resource::Plan9, Resource::Vsmb]),
                        _ => profile.allows_any(&[r]),
                    }
                );
            }
            for action in [Action::Pause, Action::Resume, Action::Save] {
                assert_eq!(vm.supports_action(action), profile.allows_action(action));
            }
        }
    }
    assert!(seen_on > 50 && seen_off > 50, "{seen_on} {seen_off}");
}
