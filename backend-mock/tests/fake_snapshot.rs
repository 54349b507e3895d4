//! Save and restore of a paused fake VM.
#![cfg(test)]

mod support;

use std::time::Duration;

use support::*;
use uvm_api::{
    Backend, Error, ImageFormat, Operation, PciDevice, ProcessorLimits, Resource, ShareKind, State,
    StopMode, StopReason, Uvm, VpmemController, VpmemDevice,
};
use uvm_backend_mock::{FakeUvm, Profile};

/// A paused VM with one device of each kind, some of them hot-added.
async fn furnished(dir: &std::path::Path) -> FakeUvm {
    let img = image(dir, "disk.img", 8192);
    let cfg = config("snap")
        .scsi_controllers(2)
        .scsi_disk(disk(0, 0, &img))
        .build()
        .unwrap();
    let vm = backend().create_fake(cfg).await.unwrap();
    vm.start().await.unwrap();
    let scsi = vm.scsi().unwrap();
    scsi.add_disk(disk(1, 3, &image(dir, "b.img", 4096)))
        .await
        .unwrap();
    scsi.add_disk(disk(1, 4, &image(dir, "c.img", 512)))
        .await
        .unwrap();
    // Leave a hole in the names: sdb goes.
    scsi.remove_disk(1, 3)
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    vm.vpmem()
        .unwrap()
        .add_controller(VpmemController {
            max_devices: 2,
            max_size_bytes: 1 << 20,
        })
        .await
        .unwrap();
    vm.vpmem()
        .unwrap()
        .add_device(VpmemDevice {
            id: 1,
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
    vm.network()
        .unwrap()
        .add_nic(nic("n1", "02:00:00:00:00:02"))
        .await
        .unwrap();
    vm.network()
        .unwrap()
        .remove_nic("n0")
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    vm.shared_folders()
        .unwrap()
        .add_share(share(ShareKind::VirtioFs, "data", dir))
        .await
        .unwrap();
    vm.pci()
        .unwrap()
        .add_device(PciDevice {
            id: "gpu".into(),
            host_path: dir.to_path_buf(),
            virtual_function: None,
        })
        .await
        .unwrap();
    vm.memory().unwrap().update_memory(1024).await.unwrap();
    vm.processor()
        .unwrap()
        .update_limits(ProcessorLimits {
            limit: Some(2500),
            ..Default::default()
        })
        .await
        .unwrap();
    vm.guest_probe().unwrap().serve_echo(7).await.unwrap();
    vm.guest_probe()
        .unwrap()
        .write_block("sda", 10, b"saved")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    vm.pause().await.unwrap();
    vm
}

#[tokio::test]
async fn a_snapshot_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let vm = furnished(dir.path()).await;
    let view = vm.guest_view();
    assert_eq!(view.block_devices.len(), 2);
    assert_eq!(view.nics[0].name, "eth1");
    let saved_stats = vm.stats().await.unwrap();
    let snap = dir.path().join("vm.snap");
    vm.save(&snap).await.unwrap();
    assert_eq!(vm.state(), State::Paused);

    let restored = backend().restore_fake(&snap).await.unwrap();
    assert_eq!(restored.id(), "snap");
    assert_eq!(restored.state(), State::Paused);
    assert_eq!(restored.guest_view(), view);
    assert_eq!(restored.memory_mib(), 1024);
    assert_eq!(restored.processor_limits().limit, Some(2500));
    let stats = restored.stats().await.unwrap();
    assert!(stats.uptime >= saved_stats.uptime);
    assert_eq!(
        stats.processor.total_runtime,
        saved_stats.processor.total_runtime
    );
    assert_eq!(stats.memory.assigned_bytes, 1024 << 20);

    // The restored guest runs on, with its devices and its echo listener.
    restored.resume().await.unwrap();
    let probe = restored.guest_probe().unwrap();
    assert_eq!(probe.read_block("sda", 10, 5).await.unwrap(), b"saved");
    assert_eq!(probe.shares().await.unwrap()[0].tag, "data");
    let mut stream = restored.vm_socket().unwrap().connect(7).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"still here").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still here");
    // Ids are taken in the restored VM as in the saved one.
    assert_kind(
        restored
            .pci()
            .unwrap()
            .add_device(PciDevice {
                id: "gpu".into(),
                host_path: dir.path().to_path_buf(),
                virtual_function: None,
            })
            .await,
        "already_exists",
    );

    // The two VMs are independent.
    restored.stop(StopMode::Force).await.unwrap();
    assert_eq!(vm.state(), State::Paused);
    vm.resume().await.unwrap();
    vm.stop(StopMode::Graceful { timeout: LONG }).await.unwrap();
    assert_eq!(vm.wait().await.reason, StopReason::Shutdown);
}

#[tokio::test]
async fn restore_through_the_backend_trait() {
    let dir = tempfile::tempdir().unwrap();
    let vm = in_state("dyn", State::Paused).await;
    let snap = dir.path().join("vm.snap");
    vm.save(&snap).await.unwrap();
    let b: Box<dyn Backend> = Box::new(backend());
    let restored = b.restore(&snap).await.unwrap();
    assert_eq!(restored.state(), State::Paused);
    restored.resume().await.unwrap();
    assert_eq!(restored.state(), State::Running);
}

#[tokio::test]
async fn bad_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend();
    assert_kind(b.restore_fake(&dir.path().join("missing")).await, "io");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"\x00\x01 not json").unwrap();
    assert_kind(b.restore_fake(&garbage).await, "invalid_argument");
    let other = dir.path().join("other.json");
    std::fs::write(&other, br#"{"format":"something-else","version":1}"#).unwrap();
    assert_kind(b.restore_fake(&other).await, "invalid_argument");
}

#[tokio::test]
async fn a_snapshot_names_only_files_that_still_exist() {
    let dir = tempfile::tempdir().unwrap();
    let vm = furnished(dir.path()).await;
    let snap = dir.path().join("vm.snap");
    vm.save(&snap).await.unwrap();
    std::fs::remove_file(dir.path().join("c.img")).unwrap();
    assert_kind(backend().restore_fake(&snap).await, "invalid_argument");
}

#[tokio::test]
async fn restore_needs_the_capabilities_of_the_saved_devices() {
    let dir = tempfile::tempdir().unwrap();
    let vm = furnished(dir.path()).await;
    let snap = dir.path().join("vm.snap");
    vm.save(&snap).await.unwrap();
    let b = backend_with(Profile::all().without(Resource::Pci, Operation::Add));
    match b.restore_fake(&snap).await {
        Err(Error::NotSupported { resource, .. }) => assert_eq!(resource, Resource::Pci),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_device_being_removed_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 512);
    let vm = running("pend").await;
    vm.scsi().unwrap().add_disk(disk(0, 0, &img)).await.unwrap();
    vm.faults().hold_ejects(true);
    let removal = vm.scsi().unwrap().remove_disk(0, 0).await.unwrap();
    vm.pause().await.unwrap();
    let snap = dir.path().join("vm.snap");
    vm.save(&snap).await.unwrap();
    let restored = backend().restore_fake(&snap).await.unwrap();
    assert!(restored.guest_view().block_devices.is_empty());
    assert_eq!(vm.guest_view().block_devices.len(), 1);
    assert!(!removal.is_complete());
}

#[tokio::test]
async fn saving_to_an_unwritable_place_fails() {
    let dir = tempfile::tempdir().unwrap();
    let vm = in_state("w", State::Paused).await;
    assert_kind(vm.save(&dir.path().join("no/such/dir/snap")).await, "io");
    assert_eq!(vm.state(), State::Paused);
}
