//! Lifecycle of the fake VM: every action in every state, stop modes, exit
//! reasons, waiters, boot.
#![cfg(test)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use uvm_api::{
    Action, Backend, ConsoleSink, Error, ExitStatus, GuestAction, GuestOs, Registry, State,
    StopMode, StopReason, Uvm,
};
use uvm_backend_mock::{BACKEND_NAME, FakeBackend, FakeOptions, FakeUvm, Profile, register};

/// Performs `action` on `vm` the way a shim would.
async fn perform(vm: &FakeUvm, action: Action, dir: &std::path::Path) -> uvm_api::Result<()> {
    match action {
        Action::Start => vm.start().await,
        Action::Stop => vm.stop(StopMode::Force).await,
        Action::Pause => vm.pause().await,
        Action::Resume => vm.resume().await,
        Action::Save => vm.save(&dir.join("snap.json")).await,
        Action::ChangeDevices => vm.scsi().unwrap().add_controller(0).await,
        Action::UpdateResources => vm.memory().unwrap().update_memory(1024).await,
        Action::Listen => vm.vm_socket().unwrap().listen(5000).await.map(drop),
        Action::Connect => {
            // Give a running guest something to connect to.
            let _ = vm.guest_probe().unwrap().serve_echo(6000).await;
            vm.vm_socket().unwrap().connect(6000).await.map(drop)
        }
    }
}

/// Checks that the action had its effect.
async fn check_effect(vm: &FakeUvm, action: Action, dir: &std::path::Path) {
    match action {
        Action::Save => assert!(dir.join("snap.json").is_file()),
        Action::ChangeDevices => {
            assert_kind(vm.scsi().unwrap().add_controller(0).await, "already_exists")
        }
        Action::UpdateResources => assert_eq!(vm.memory_mib(), 1024),
        _ => {}
    }
}

#[tokio::test]
async fn every_action_in_every_state_follows_the_table() {
    for state in STATES {
        for action in Action::ALL {
            let dir = tempfile::tempdir().unwrap();
            let vm = in_state("table", state).await;
            let expected = state.check(action);
            let got = perform(&vm, action, dir.path()).await;
            match expected {
                Ok(next) => {
                    assert!(got.is_ok(), "{action} in {state}: {got:?}");
                    assert_eq!(vm.state(), next, "{action} in {state}");
                    check_effect(&vm, action, dir.path()).await;
                }
                Err(_) => {
                    match &got {
                        Err(Error::InvalidState {
                            operation,
                            state: s,
                        }) => {
                            assert_eq!(*s, state, "{action} in {state}");
                            assert_eq!(operation, action.as_str());
                        }
                        other => {
                            panic!("{action} in {state}: expected InvalidState, got {other:?}")
                        }
                    }
                    assert_eq!(vm.state(), state, "{action} in {state} changed the state");
                    assert_eq!(vm.memory_mib(), 512);
                    assert!(!dir.path().join("snap.json").exists());
                }
            }
        }
    }
}

#[tokio::test]
async fn graceful_stop_is_a_shutdown_force_is_a_kill() {
    let vm = running("g").await;
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    assert_eq!(vm.wait().await, ExitStatus::new(StopReason::Shutdown));
    assert!(vm.exit_error().is_none());

    let vm = running("f").await;
    vm.stop(StopMode::Force).await.unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Killed);
    assert!(vm.exit_error().is_none());
}

#[tokio::test]
async fn stop_before_start_and_while_paused_kills() {
    let vm = created("c").await;
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Killed);

    let vm = in_state("p", State::Paused).await;
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Killed);
}

#[tokio::test]
async fn stopping_twice_keeps_the_first_status() {
    let vm = running("twice").await;
    vm.guest_probe()
        .unwrap()
        .trigger(GuestAction::Panic)
        .await
        .unwrap();
    vm.stop(StopMode::Force).await.unwrap();
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    assert_eq!(vm.state(), State::Stopped);
    assert_eq!(vm.wait().await.reason, StopReason::GuestPanic);
}

#[tokio::test(start_paused = true)]
async fn a_guest_ignoring_the_power_button_is_killed_after_the_timeout() {
    let vm = running("deaf").await;
    vm.faults().ignore_power_button(true);
    let timeout = Duration::from_secs(30);
    let before = tokio::time::Instant::now();
    vm.stop(StopMode::Graceful { timeout }).await.unwrap();
    assert!(before.elapsed() >= timeout, "{:?}", before.elapsed());
    assert_eq!(vm.wait().await.reason, StopReason::Killed);
}

#[tokio::test(start_paused = true)]
async fn a_guest_exit_during_a_graceful_wait_ends_the_stop() {
    let vm = running("deaf2").await;
    vm.faults().ignore_power_button(true);
    let stopper = {
        let vm = vm.clone();
        tokio::spawn(async move {
            vm.stop(StopMode::Graceful {
                timeout: Duration::from_secs(3600),
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(vm.state(), State::Running);
    vm.faults().guest_exit(StopReason::Reboot);
    stopper.await.unwrap().unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Reboot);
}

#[tokio::test]
async fn guest_actions_give_their_reasons() {
    let cases = [
        (GuestAction::PowerOff, StopReason::Shutdown, false),
        (GuestAction::Reboot, StopReason::Reboot, false),
        (GuestAction::Panic, StopReason::GuestPanic, true),
        (GuestAction::Crash, StopReason::Crash, true),
    ];
    for (action, reason, is_error) in cases {
        let vm = running("act").await;
        assert!(vm.exit_status().is_none() && vm.exit_error().is_none());
        vm.guest_probe().unwrap().trigger(action).await.unwrap();
        assert_eq!(vm.state(), State::Stopped);
        assert_eq!(vm.wait().await.reason, reason);
        assert_eq!(vm.exit_status().map(|s| s.reason), Some(reason));
        assert_eq!(vm.exit_error().is_some(), is_error, "{action:?}");
        if let Some(e) = vm.exit_error() {
            assert_eq!(e.reason, reason);
        }
    }
}

#[tokio::test]
async fn a_paused_or_stopped_guest_cannot_act() {
    for state in [State::Created, State::Paused, State::Stopped] {
        let vm = in_state("idle", state).await;
        assert_invalid_state(
            vm.guest_probe().unwrap().trigger(GuestAction::Crash).await,
            state,
        );
        assert_eq!(vm.state(), state);
    }
}

#[tokio::test]
async fn any_number_of_waiters_get_the_same_status() {
    let vm = running("waiters").await;
    let waiters: Vec<_> = (0..16)
        .map(|_| {
            let vm = vm.clone();
            tokio::spawn(async move { vm.wait().await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(waiters.iter().all(|w| !w.is_finished()));
    vm.faults().guest_exit(StopReason::Crash);
    for w in waiters {
        assert_eq!(
            tokio::time::timeout(LONG, w).await.unwrap().unwrap().reason,
            StopReason::Crash
        );
    }
    // After the exit, wait returns at once, again and again.
    for _ in 0..3 {
        let status = tokio::time::timeout(Duration::from_millis(100), vm.wait())
            .await
            .unwrap();
        assert_eq!(status.reason, StopReason::Crash);
    }
}

#[tokio::test]
async fn waiting_through_a_trait_object_works_from_many_tasks() {
    let vm: Arc<dyn Uvm> = Arc::new(running("dyn").await);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let vm = vm.clone();
            tokio::spawn(async move { vm.wait().await })
        })
        .collect();
    vm.stop(StopMode::Force).await.unwrap();
    for h in handles {
        assert_eq!(h.await.unwrap().reason, StopReason::Killed);
    }
}

#[tokio::test(start_paused = true)]
async fn boot_takes_the_boot_delay() {
    let backend = FakeBackend::with_options(FakeOptions {
        boot_delay: Duration::from_secs(5),
        ..FakeOptions::default()
    });
    let vm = backend
        .create_fake(config("slow").build().unwrap())
        .await
        .unwrap();
    let before = tokio::time::Instant::now();
    vm.start().await.unwrap();
    assert!(before.elapsed() >= Duration::from_secs(5));
    assert_eq!(vm.state(), State::Running);
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_boot_wins() {
    let backend = FakeBackend::with_options(FakeOptions {
        boot_delay: Duration::from_secs(60),
        ..FakeOptions::default()
    });
    let vm = backend
        .create_fake(config("slow").build().unwrap())
        .await
        .unwrap();
    let starter = {
        let vm = vm.clone();
        tokio::spawn(async move { vm.start().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A second start while the first boots is refused.
    assert_kind(vm.start().await, "invalid_state");
    vm.stop(StopMode::Force).await.unwrap();
    assert_invalid_state(starter.await.unwrap(), State::Stopped);
    assert_eq!(vm.wait().await.reason, StopReason::Killed);
}

#[tokio::test]
async fn a_missing_kernel_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    let vm = backend()
        .create_fake(config("k").kernel(&kernel).build().unwrap())
        .await
        .unwrap();
    assert_kind(vm.start().await, "invalid_argument");
    assert_eq!(vm.state(), State::Stopped);
    assert_eq!(vm.wait().await.reason, StopReason::StartFailed);
    assert!(vm.exit_error().is_some());

    std::fs::write(&kernel, b"kernel").unwrap();
    let vm = backend()
        .create_fake(config("k").kernel(&kernel).build().unwrap())
        .await
        .unwrap();
    vm.start().await.unwrap();
}

#[tokio::test]
async fn the_console_file_gets_boot_and_exit_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let vm = backend()
        .create_fake(
            config("con")
                .console(ConsoleSink::File(log.clone()))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(!log.exists());
    vm.start().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("mock guest con: 2 vCPU(s), 512 MiB"),
        "{text}"
    );
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Power down"), "{text}");
}

#[tokio::test]
async fn an_unwritable_console_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing-dir").join("console.log");
    let vm = backend()
        .create_fake(
            config("con")
                .console(ConsoleSink::File(log))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_kind(vm.start().await, "io");
    assert_eq!(vm.wait().await.reason, StopReason::StartFailed);
}

#[tokio::test]
async fn windows_and_bad_configs_are_refused() {
    let b = backend();
    assert!(b.supports_guest_os(GuestOs::Linux));
    assert!(!b.supports_guest_os(GuestOs::Windows));
    let windows = config("w").guest_os(GuestOs::Windows).build().unwrap();
    match b.create(windows).await {
        Err(Error::UnsupportedGuestOs { os, backend }) => {
            assert_eq!(os, GuestOs::Windows);
            assert_eq!(backend, BACKEND_NAME);
        }
        other => panic!("{:?}", other.map(|v| v.id().to_owned())),
    }
    let mut bad = config("b").build().unwrap();
    bad.vcpus = 0;
    assert_kind(b.create_fake(bad).await, "invalid_config");
}

#[tokio::test]
async fn boot_devices_with_a_missing_image_fail_the_create() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("m")
        .scsi_controllers(1)
        .scsi_disk(disk(0, 0, &dir.path().join("nope.img")))
        .build()
        .unwrap();
    assert_kind(backend().create_fake(cfg).await, "invalid_argument");
}

#[tokio::test]
async fn the_registry_creates_mock_vms() {
    let mut registry = Registry::new();
    register(&mut registry).unwrap();
    assert_eq!(registry.names(), vec![BACKEND_NAME.to_owned()]);
    assert_kind(register(&mut registry), "already_set");
    let vm = registry
        .create("mock", config("reg").build().unwrap())
        .await
        .unwrap();
    assert_eq!(vm.id(), "reg");
    assert_eq!(vm.state(), State::Created);
    assert_eq!(registry.get("mock").unwrap().name(), "mock");
    assert_eq!(
        registry.get("mock").unwrap().capabilities(),
        Profile::all().capabilities()
    );
}

#[tokio::test]
async fn a_stopped_vm_shows_an_empty_guest() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 4096);
    let vm = running("empty").await;
    vm.scsi().unwrap().add_disk(disk(0, 0, &img)).await.unwrap();
    assert_eq!(vm.guest_view().block_devices.len(), 1);
    vm.stop(StopMode::Force).await.unwrap();
    assert_eq!(vm.guest_view(), Default::default());
    assert_invalid_state(
        vm.guest_probe().unwrap().block_devices().await,
        State::Stopped,
    );
}

#[tokio::test]
async fn pause_and_resume_keep_the_devices() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 4096);
    let vm = running("pr").await;
    vm.scsi().unwrap().add_disk(disk(0, 3, &img)).await.unwrap();
    vm.network()
        .unwrap()
        .add_nic(nic("n0", "02:00:00:00:00:01"))
        .await
        .unwrap();
    let before = vm.guest_view();
    vm.pause().await.unwrap();
    assert_eq!(vm.guest_view(), before);
    // A paused guest answers nothing.
    assert_invalid_state(
        vm.guest_probe().unwrap().network_interfaces().await,
        State::Paused,
    );
    vm.resume().await.unwrap();
    assert_eq!(vm.guest_view(), before);
    assert_eq!(
        vm.guest_probe().unwrap().block_devices().await.unwrap(),
        before.block_devices
    );
}

#[tokio::test]
async fn dropping_every_handle_completes_pending_removals() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 4096);
    let vm = running("drop").await;
    vm.scsi().unwrap().add_disk(disk(0, 0, &img)).await.unwrap();
    vm.faults().hold_ejects(true);
    let removal = vm.scsi().unwrap().remove_disk(0, 0).await.unwrap();
    assert!(!removal.is_complete());
    drop(vm);
    removal.wait(LONG).await.unwrap();
}
