//! Fault injection: injected failures change nothing, guest exits carry their reason.
#![cfg(test)]

mod support;

use std::path::Path;

use support::*;
use uvm_api::{
    Error, ImageFormat, PciDevice, ProcessorLimits, ShareKind, State, StopMode, StopReason, Uvm,
    VpmemController, VpmemDevice,
};
use uvm_backend_mock::{FakeUvm, FaultPoint, InjectedFault};

fn assert_injected<T: std::fmt::Debug>(result: uvm_api::Result<T>, point: FaultPoint) {
    match result {
        Err(Error::Backend(source)) => {
            let fault = source
                .downcast_ref::<InjectedFault>()
                .unwrap_or_else(|| panic!("not an injected fault: {source}"));
            assert_eq!(fault.point, point);
        }
        other => panic!("expected the fault at {point}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_start_stops_the_vm_with_start_failed() {
    let vm = created("s").await;
    vm.faults().fail_next(FaultPoint::Start);
    assert!(vm.faults().is_armed(FaultPoint::Start));
    assert_injected(vm.start().await, FaultPoint::Start);
    assert!(!vm.faults().is_armed(FaultPoint::Start));
    assert_eq!(vm.state(), State::Stopped);
    let status = vm.wait().await;
    assert_eq!(status.reason, StopReason::StartFailed);
    assert!(status.detail.unwrap().contains("injected"));
    assert_eq!(vm.exit_error().unwrap().reason, StopReason::StartFailed);
}

#[tokio::test]
async fn lifecycle_faults_change_nothing_and_fire_once() {
    let dir = tempfile::tempdir().unwrap();
    let vm = running("life").await;

    vm.faults().fail_next(FaultPoint::Stop);
    assert_injected(vm.stop(StopMode::Force).await, FaultPoint::Stop);
    assert_eq!(vm.state(), State::Running);
    assert!(vm.exit_status().is_none());

    vm.faults().fail_next(FaultPoint::Pause);
    assert_injected(vm.pause().await, FaultPoint::Pause);
    assert_eq!(vm.state(), State::Running);
    vm.pause().await.unwrap();

    vm.faults().fail_next(FaultPoint::Save);
    let snap = dir.path().join("snap.json");
    assert_injected(vm.save(&snap).await, FaultPoint::Save);
    assert!(!snap.exists());
    vm.save(&snap).await.unwrap();
    assert!(snap.exists());

    vm.faults().fail_next(FaultPoint::Resume);
    assert_injected(vm.resume().await, FaultPoint::Resume);
    assert_eq!(vm.state(), State::Paused);
    vm.resume().await.unwrap();

    vm.faults().fail_next(FaultPoint::Stats);
    assert_injected(vm.stats().await, FaultPoint::Stats);
    vm.stats().await.unwrap();

    vm.stop(StopMode::Force).await.unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Killed);
}

#[tokio::test]
async fn a_fault_stays_armed_past_calls_refused_earlier() {
    let vm = in_state("armed", State::Paused).await;
    vm.faults().fail_next(FaultPoint::Pause);
    // Refused by the state table: the fault did not fire.
    assert_invalid_state(vm.pause().await, State::Paused);
    assert!(vm.faults().is_armed(FaultPoint::Pause));
    vm.resume().await.unwrap();
    assert_injected(vm.pause().await, FaultPoint::Pause);
    vm.faults().fail_next(FaultPoint::Pause);
    vm.faults().clear();
    vm.pause().await.unwrap();
}

/// A device operation to fail, and what must be unchanged afterwards.
async fn device_op(vm: &FakeUvm, point: FaultPoint, dir: &Path) -> uvm_api::Result<()> {
    let img = dir.join("img");
    match point {
        FaultPoint::AddScsiController => vm.scsi().unwrap().add_controller(2).await,
        FaultPoint::AddDisk => vm.scsi().unwrap().add_disk(disk(0, 9, &img)).await,
        FaultPoint::RemoveDisk => vm.scsi().unwrap().remove_disk(0, 0).await.map(drop),
        FaultPoint::AddVpmem => {
            vm.vpmem()
                .unwrap()
                .add_device(VpmemDevice {
                    id: 1,
                    path: img,
                    read_only: true,
                    format: ImageFormat::Raw,
                })
                .await
        }
        FaultPoint::RemoveVpmem => vm.vpmem().unwrap().remove_device(0).await.map(drop),
        FaultPoint::AddNic => {
            vm.network()
                .unwrap()
                .add_nic(nic("n1", "02:00:00:00:00:02"))
                .await
        }
        FaultPoint::RemoveNic => vm.network().unwrap().remove_nic("n0").await.map(drop),
        FaultPoint::AddShare => {
            vm.shared_folders()
                .unwrap()
                .add_share(share(ShareKind::Plan9, "p9", dir))
                .await
        }
        FaultPoint::RemoveShare => vm
            .shared_folders()
            .unwrap()
            .remove_share(ShareKind::VirtioFs, "s")
            .await
            .map(drop),
        FaultPoint::AddPci => {
            vm.pci()
                .unwrap()
                .add_device(PciDevice {
                    id: "p1".into(),
                    host_path: dir.to_path_buf(),
                    virtual_function: None,
                })
                .await
        }
        FaultPoint::RemovePci => vm.pci().unwrap().remove_device("p0").await.map(drop),
        FaultPoint::Listen => vm.vm_socket().unwrap().listen(1).await.map(drop),
        FaultPoint::Connect => vm.vm_socket().unwrap().connect(2).await.map(drop),
        FaultPoint::UpdateMemory => vm.memory().unwrap().update_memory(1024).await,
        FaultPoint::UpdateProcessor => {
            vm.processor()
                .unwrap()
                .update_limits(ProcessorLimits {
                    limit: Some(100),
                    ..Default::default()
                })
                .await
        }
        FaultPoint::SetCpuGroup => vm.cpu_group().unwrap().set_cpu_group("g").await,
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn device_faults_change_nothing_then_the_retry_works() {
    let points = [
        FaultPoint::AddScsiController,
        FaultPoint::AddDisk,
        FaultPoint::RemoveDisk,
        FaultPoint::AddVpmem,
        FaultPoint::RemoveVpmem,
        FaultPoint::AddNic,
        FaultPoint::RemoveNic,
        FaultPoint::AddShare,
        FaultPoint::RemoveShare,
        FaultPoint::AddPci,
        FaultPoint::RemovePci,
        FaultPoint::Listen,
        FaultPoint::Connect,
        FaultPoint::UpdateMemory,
        FaultPoint::UpdateProcessor,
        FaultPoint::SetCpuGroup,
    ];
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), "img", 4096);
        let vm = running("dev").await;
        vm.scsi().unwrap().add_disk(disk(0, 0, &img)).await.unwrap();
        vm.vpmem()
            .unwrap()
            .add_controller(VpmemController {
                max_devices: 4,
                max_size_bytes: 1 << 20,
            })
            .await
            .unwrap();
        vm.vpmem()
            .unwrap()
            .add_device(VpmemDevice {
                id: 0,
                path: img.clone(),
                read_only: true,
                format: ImageFormat::Raw,
            })
            .await
            .unwrap();
        vm.network()
            .unwrap()
            .add_nic(nic("n0", "02:00:00:00:00:01"))
            .await
            .unwrap();
        vm.shared_folders()
            .unwrap()
            .add_share(share(ShareKind::VirtioFs, "s", dir.path()))
            .await
            .unwrap();
        vm.pci()
            .unwrap()
            .add_device(PciDevice {
                id: "p0".into(),
                host_path: dir.path().to_path_buf(),
                virtual_function: None,
            })
            .await
            .unwrap();
        vm.guest_probe().unwrap().serve_echo(2).await.unwrap();

        let view = vm.guest_view();
        let stats = vm.stats().await.unwrap();
        let (limits, group) = (vm.processor_limits(), vm.cpu_group_id());
        vm.faults().fail_next(point);
        assert_injected(device_op(&vm, point, dir.path()).await, point);
        assert_eq!(vm.guest_view(), view, "{point} changed the guest");
        assert_eq!(vm.stats().await.unwrap().memory, stats.memory, "{point}");
        assert_eq!(vm.processor_limits(), limits, "{point}");
        assert_eq!(vm.cpu_group_id(), group, "{point}");
        device_op(&vm, point, dir.path())
            .await
            .unwrap_or_else(|e| panic!("{point} retry: {e}"));
    }
}

#[tokio::test]
async fn guest_exits_report_their_reason() {
    for reason in StopReason::ALL {
        for state in [State::Running, State::Paused] {
            let vm = in_state("exit", state).await;
            let waiter = {
                let vm = vm.clone();
                tokio::spawn(async move { vm.wait().await })
            };
            vm.faults().guest_exit(reason);
            assert_eq!(vm.state(), State::Stopped);
            assert_eq!(waiter.await.unwrap().reason, reason);
            assert_eq!(vm.exit_status().unwrap().reason, reason);
            assert_eq!(
                vm.exit_error().is_some(),
                !reason.is_expected(),
                "{reason} from {state}"
            );
            // A second exit changes nothing.
            vm.faults().guest_exit(StopReason::Crash);
            assert_eq!(vm.wait().await.reason, reason);
        }
    }
}

#[tokio::test]
async fn a_guest_that_never_started_cannot_exit() {
    let vm = created("never").await;
    vm.faults().guest_exit(StopReason::Crash);
    assert_eq!(vm.state(), State::Created);
    assert!(vm.exit_status().is_none());
    vm.start().await.unwrap();
}
