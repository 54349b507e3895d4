//! Two-phase removal: the host side returns at once, the id stays reserved
//! until the simulated guest releases the device.
#![cfg(test)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use uvm_api::{
    Error, ImageFormat, PciDevice, Removal, Resource, ShareKind, State, StopMode, Uvm,
    VpmemController, VpmemDevice,
};
use uvm_backend_mock::FakeUvm;

#[tokio::test]
async fn a_held_removal_stays_pending_and_reserves_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 4096);
    let vm = running("held").await;
    let scsi = vm.scsi().unwrap();
    scsi.add_disk(disk(0, 1, &img)).await.unwrap();
    vm.faults().hold_ejects(true);

    let removal = scsi.remove_disk(0, 1).await.unwrap();
    assert_eq!(removal.resource(), Resource::Scsi);
    assert_eq!(removal.id(), "0:1");
    assert!(!removal.is_complete());
    // The guest still has it.
    assert_eq!(vm.guest_view().block_devices.len(), 1);
    assert_eq!(
        vm.guest_probe()
            .unwrap()
            .read_block("sda", 0, 2)
            .await
            .unwrap(),
        [0, 1]
    );
    // The id is reserved, and a second remove does not find it.
    assert_kind(scsi.add_disk(disk(0, 1, &img)).await, "already_exists");
    assert_kind(scsi.remove_disk(0, 1).await, "not_found");
    match removal.wait(Duration::from_millis(50)).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!removal.is_complete());

    vm.faults().hold_ejects(false);
    removal.wait(LONG).await.unwrap();
    assert!(vm.guest_view().block_devices.is_empty());
    scsi.add_disk(disk(0, 1, &img)).await.unwrap();
    assert_eq!(vm.guest_view().block_devices.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_guest_releases_after_the_eject_delay() {
    let backend = backend_with_eject(Duration::from_secs(1));
    let vm = backend
        .create_fake(config("delay").build().unwrap())
        .await
        .unwrap();
    vm.start().await.unwrap();
    let net = vm.network().unwrap();
    net.add_nic(nic("n", "02:00:00:00:00:01")).await.unwrap();
    let removal = net.remove_nic("n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!removal.is_complete());
    assert_eq!(vm.guest_view().nics.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(removal.is_complete());
    assert!(vm.guest_view().nics.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_paused_guest_releases_nothing_until_resumed() {
    let backend = backend_with_eject(Duration::from_millis(10));
    let vm = backend
        .create_fake(config("pz").build().unwrap())
        .await
        .unwrap();
    vm.start().await.unwrap();
    let net = vm.network().unwrap();
    net.add_nic(nic("n", "02:00:00:00:00:01")).await.unwrap();
    let removal = net.remove_nic("n").await.unwrap();
    vm.pause().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!removal.is_complete());
    vm.resume().await.unwrap();
    removal.wait(LONG).await.unwrap();
}

#[tokio::test]
async fn stopping_completes_every_pending_removal() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 4096);
    let vm = running("stop").await;
    vm.scsi().unwrap().add_disk(disk(0, 0, &img)).await.unwrap();
    vm.network()
        .unwrap()
        .add_nic(nic("n", "02:00:00:00:00:01"))
        .await
        .unwrap();
    vm.faults().hold_ejects(true);
    let a = vm.scsi().unwrap().remove_disk(0, 0).await.unwrap();
    let b = vm.network().unwrap().remove_nic("n").await.unwrap();
    assert!(!a.is_complete() && !b.is_complete());
    vm.stop(StopMode::Force).await.unwrap();
    a.wait(LONG).await.unwrap();
    b.wait(LONG).await.unwrap();
    // The removed disk is gone; no stats for it.
    assert!(vm.stats().await.unwrap().devices.is_empty());
}

/// Adds one device of `resource` with id-ish `n` to a running VM, returning its removal call.
async fn add(vm: &FakeUvm, resource: Resource, dir: &Path) {
    let img = image(dir, "img", 4096);
    match resource {
        Resource::Scsi => vm.scsi().unwrap().add_disk(disk(0, 2, &img)).await.unwrap(),
        Resource::VPMem => vm
            .vpmem()
            .unwrap()
            .add_device(VpmemDevice {
                id: 0,
                path: img,
                read_only: true,
                format: ImageFormat::Raw,
            })
            .await
            .unwrap(),
        Resource::Network => vm
            .network()
            .unwrap()
            .add_nic(nic("n0", "02:00:00:00:00:01"))
            .await
            .unwrap(),
        Resource::VirtioFs => vm
            .shared_folders()
            .unwrap()
            .add_share(share(ShareKind::VirtioFs, "s", dir))
            .await
            .unwrap(),
        Resource::Pci => vm
            .pci()
            .unwrap()
            .add_device(PciDevice {
                id: "p".into(),
                host_path: dir.to_path_buf(),
                virtual_function: None,
            })
            .await
            .unwrap(),
        other => panic!("{other}"),
    }
}

async fn remove(vm: &FakeUvm, resource: Resource) -> uvm_api::Result<Removal> {
    match resource {
        Resource::Scsi => vm.scsi().unwrap().remove_disk(0, 2).await,
        Resource::VPMem => vm.vpmem().unwrap().remove_device(0).await,
        Resource::Network => vm.network().unwrap().remove_nic("n0").await,
        Resource::VirtioFs => {
            vm.shared_folders()
                .unwrap()
                .remove_share(ShareKind::VirtioFs, "s")
                .await
        }
        Resource::Pci => vm.pci().unwrap().remove_device("p").await,
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn every_kind_of_device_follows_the_two_phases() {
    for resource in [
        Resource::Scsi,
        Resource::VPMem,
        Resource::Network,
        Resource::VirtioFs,
        Resource::Pci,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let vm = running("kinds").await;
        vm.vpmem()
            .unwrap()
            .add_controller(VpmemController {
                max_devices: 4,
                max_size_bytes: 1 << 20,
            })
            .await
            .unwrap();
        add(&vm, resource, dir.path()).await;
        let view = vm.guest_view();
        vm.faults().hold_ejects(true);
        let removal = remove(&vm, resource).await.unwrap();
        assert_eq!(removal.resource(), resource);
        assert!(!removal.is_complete(), "{resource}");
        assert_eq!(vm.guest_view(), view, "{resource}: released too early");
        assert_kind(remove(&vm, resource).await, "not_found");
        vm.faults().hold_ejects(false);
        removal.wait(LONG).await.unwrap();
        assert_kind(remove(&vm, resource).await, "not_found");
        add(&vm, resource, dir.path()).await;
        assert_eq!(vm.guest_view(), view, "{resource}: re-add differs");
    }
}

#[tokio::test]
async fn a_controller_removal_is_two_phase_too() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 512);
    let vm = running("ctl").await;
    let scsi = vm.scsi().unwrap();
    scsi.add_controller(1).await.unwrap();
    vm.faults().hold_ejects(true);
    let removal = scsi.remove_controller(1).await.unwrap();
    assert!(!removal.is_complete());
    assert_kind(scsi.add_controller(1).await, "already_exists");
    assert_kind(scsi.add_disk(disk(1, 0, &img)).await, "not_found");
    vm.faults().hold_ejects(false);
    removal.wait(LONG).await.unwrap();
    scsi.add_controller(1).await.unwrap();
    scsi.add_disk(disk(1, 0, &img)).await.unwrap();
}

#[tokio::test]
async fn many_removals_complete_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 512);
    let vm = running("many").await;
    let scsi = vm.scsi().unwrap();
    for lun in 0..64 {
        scsi.add_disk(disk(0, lun, &img)).await.unwrap();
    }
    assert_kind(scsi.add_disk(disk(0, 64, &img)).await, "invalid_argument");
    let mut removals = Vec::new();
    for lun in 0..64 {
        removals.push(scsi.remove_disk(0, lun).await.unwrap());
    }
    for r in &removals {
        r.wait(LONG).await.unwrap();
    }
    assert!(vm.guest_view().block_devices.is_empty());
    assert_eq!(vm.state(), State::Running);
}
