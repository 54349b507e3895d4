//! Device managers of the fake VM: limits, bad inputs, and what the guest sees.
#![cfg(test)]

mod support;

use std::io::ErrorKind;

use support::*;
use uvm_api::config::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use uvm_api::{
    DiskFormat, Error, GuestBlockDevice, ImageFormat, MacAddress, PciDevice, ProcessorLimits,
    Resource, ShareKind, State, StopMode, Uvm, VpmemController, VpmemDevice,
};

fn io_kind<T: std::fmt::Debug>(result: uvm_api::Result<T>) -> ErrorKind {
    match result {
        Err(Error::Io { source, .. }) => source.kind(),
        other => panic!("expected Io, got {other:?}"),
    }
}

// ---------------------------------------------------------------- SCSI

#[tokio::test]
async fn scsi_controllers_have_limits() {
    let vm = created("ctl").await; // controller 0 from the config
    let scsi = vm.scsi().unwrap();
    assert_kind(scsi.add_controller(0).await, "already_exists");
    for i in 1..4 {
        scsi.add_controller(i).await.unwrap();
    }
    match scsi.add_controller(4).await {
        Err(Error::LimitReached { resource, .. }) => assert_eq!(resource, Resource::Scsi),
        other => panic!("{other:?}"),
    }
    assert_kind(scsi.remove_controller(9).await, "not_found");
    scsi.remove_controller(3)
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    scsi.add_controller(3).await.unwrap();
}

#[tokio::test]
async fn scsi_disk_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "a.img", 8192);
    let vm = running("bad").await;
    let scsi = vm.scsi().unwrap();
    scsi.add_disk(disk(0, 1, &img)).await.unwrap();
    let before = vm.guest_view();

    // Duplicate LUN.
    match scsi.add_disk(disk(0, 1, &img)).await {
        Err(Error::AlreadyExists { resource, id }) => {
            assert_eq!((resource, id.as_str()), (Resource::Scsi, "0:1"));
        }
        other => panic!("{other:?}"),
    }
    // Unknown controller.
    assert_kind(scsi.add_disk(disk(2, 0, &img)).await, "not_found");
    // LUN beyond the controller.
    assert_kind(scsi.add_disk(disk(0, 64, &img)).await, "invalid_argument");
    // Relative and missing paths.
    let mut rel = disk(0, 2, &img);
    rel.path = "a.img".into();
    assert_kind(scsi.add_disk(rel).await, "invalid_argument");
    assert_kind(
        scsi.add_disk(disk(0, 2, &dir.path().join("missing.img")))
            .await,
        "invalid_argument",
    );
    // A directory is no image.
    assert_kind(
        scsi.add_disk(disk(0, 2, dir.path())).await,
        "invalid_argument",
    );
    // Formats the fake cannot serve are refused as arguments, not as unsupported.
    for format in [DiskFormat::Vhd, DiskFormat::Vhdx, DiskFormat::Qcow2] {
        let mut d = disk(0, 2, &img);
        d.format = format;
        match scsi.add_disk(d).await {
            Err(Error::InvalidArgument { argument, .. }) => assert_eq!(argument, "format"),
            other => panic!("{format:?}: {other:?}"),
        }
    }
    // Removing what is not there.
    assert_kind(scsi.remove_disk(0, 9).await, "not_found");
    // A controller with disks cannot go.
    assert_kind(scsi.remove_controller(0).await, "invalid_argument");

    assert_eq!(vm.guest_view(), before, "a refused call changed the guest");
    let mut block = disk(0, 2, &img);
    block.format = DiskFormat::BlockDevice;
    scsi.add_disk(block).await.unwrap();
}

#[tokio::test]
async fn a_hot_added_disk_is_seen_with_its_size_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "data.img", 3 * 4096);
    let vm = running("hot").await;
    let probe = vm.guest_probe().unwrap();
    assert!(probe.block_devices().await.unwrap().is_empty());

    vm.scsi().unwrap().add_disk(disk(0, 5, &img)).await.unwrap();
    let devices = probe.block_devices().await.unwrap();
    assert_eq!(
        devices,
        vec![GuestBlockDevice {
            name: "sda".into(),
            size_bytes: 3 * 4096,
            scsi_address: Some((0, 5)),
            read_only: false,
        }]
    );
    assert_eq!(vm.guest_view().block_devices, devices);

    // What the host wrote, the guest reads.
    let mut data = std::fs::read(&img).unwrap();
    data[4096..4101].copy_from_slice(b"hello");
    std::fs::write(&img, &data).unwrap();
    assert_eq!(probe.read_block("sda", 4096, 5).await.unwrap(), b"hello");
    // What the guest writes, the host reads.
    probe.write_block("sda", 100, b"from guest").await.unwrap();
    let host = std::fs::read(&img).unwrap();
    assert_eq!(&host[100..110], b"from guest");
    assert_eq!(host.len(), 3 * 4096);
    // Out of range.
    assert_kind(
        probe.read_block("sda", 3 * 4096 - 2, 5).await,
        "invalid_argument",
    );
    assert_kind(
        probe.write_block("sda", u64::MAX, b"x").await,
        "invalid_argument",
    );
    assert_eq!(
        io_kind(probe.read_block("sdz", 0, 1).await),
        ErrorKind::NotFound
    );

    // Counted in the stats.
    let stats = vm.stats().await.unwrap();
    let counters = &stats.devices[0];
    assert_eq!(counters.id, "0:5");
    assert_eq!(counters.resource, Some(Resource::Scsi));
    assert_eq!(counters.read_bytes, Some(5));
    assert_eq!(counters.write_bytes, Some(10));
    assert_eq!(counters.requests, Some(2));

    // Removed: gone from the guest once it has released it.
    let removal = vm.scsi().unwrap().remove_disk(0, 5).await.unwrap();
    removal.wait(LONG).await.unwrap();
    assert!(probe.block_devices().await.unwrap().is_empty());
    assert!(vm.guest_view().block_devices.is_empty());
    assert!(vm.stats().await.unwrap().devices.is_empty());
}

#[tokio::test]
async fn a_read_only_disk_refuses_guest_writes() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "ro.img", 4096);
    let vm = running("ro").await;
    let mut d = disk(0, 0, &img);
    d.read_only = true;
    vm.scsi().unwrap().add_disk(d).await.unwrap();
    let probe = vm.guest_probe().unwrap();
    assert!(probe.block_devices().await.unwrap()[0].read_only);
    assert_eq!(
        io_kind(probe.write_block("sda", 0, b"nope").await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(std::fs::read(&img).unwrap()[0..4], [0, 1, 2, 3]);
    assert_eq!(probe.read_block("sda", 1, 3).await.unwrap(), [1, 2, 3]);
}

#[tokio::test]
async fn disks_get_linux_names_in_order_and_reuse_freed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 512);
    let cfg = config("names")
        .scsi_controllers(2)
        .scsi_disk(disk(1, 0, &img))
        .build()
        .unwrap();
    let vm = backend().create_fake(cfg).await.unwrap();
    let scsi = vm.scsi().unwrap();
    // Cold plug before start: part of the boot configuration.
    scsi.add_disk(disk(0, 0, &img)).await.unwrap();
    vm.start().await.unwrap();
    scsi.add_disk(disk(0, 1, &img)).await.unwrap();
    let names = |vm: &uvm_backend_mock::FakeUvm| {
        vm.guest_view()
            .block_devices
            .into_iter()
            .map(|d| (d.scsi_address, d.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&vm),
        [
            (Some((0, 0)), "sdb".to_owned()),
            (Some((0, 1)), "sdc".to_owned()),
            (Some((1, 0)), "sda".to_owned()),
        ]
    );
    scsi.remove_disk(1, 0)
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    scsi.add_disk(disk(1, 7, &img)).await.unwrap();
    assert!(names(&vm).contains(&(Some((1, 7)), "sda".to_owned())));
}

#[tokio::test]
async fn cold_unplug_before_start_completes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 512);
    let vm = created("cold").await;
    vm.faults().hold_ejects(true); // no guest yet, so nothing to hold
    let scsi = vm.scsi().unwrap();
    scsi.add_disk(disk(0, 0, &img)).await.unwrap();
    assert_eq!(vm.guest_view().block_devices.len(), 1);
    let removal = scsi.remove_disk(0, 0).await.unwrap();
    assert!(removal.is_complete());
    assert!(vm.guest_view().block_devices.is_empty());
    scsi.add_disk(disk(0, 0, &img)).await.unwrap();
    vm.start().await.unwrap();
    assert_eq!(
        vm.guest_probe().unwrap().block_devices().await.unwrap()[0].scsi_address,
        Some((0, 0))
    );
}

// ---------------------------------------------------------------- VPMem

#[tokio::test]
async fn vpmem_controller_limits_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let small = image(dir.path(), "small.img", 4096);
    let big = image(dir.path(), "big.img", 64 * 1024);
    let vm = running("pmem").await;
    let vpmem = vm.vpmem().unwrap();
    let dev = |id, path: &std::path::Path| VpmemDevice {
        id,
        path: path.to_path_buf(),
        read_only: true,
        format: ImageFormat::Vhd1,
    };

    match vpmem.add_device(dev(0, &small)).await {
        Err(Error::NotFound { resource, id }) => {
            assert_eq!((resource, id.as_str()), (Resource::VPMem, "controller"));
        }
        other => panic!("{other:?}"),
    }
    let ctl = VpmemController {
        max_devices: 2,
        max_size_bytes: 16 * 1024,
    };
    vpmem.add_controller(ctl).await.unwrap();
    assert_kind(vpmem.add_controller(ctl).await, "already_set");

    // Larger than the controller maps.
    match vpmem.add_device(dev(0, &big)).await {
        Err(Error::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("max_size_bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Slot beyond max_devices.
    assert_kind(vpmem.add_device(dev(2, &small)).await, "invalid_argument");
    // Missing image.
    assert_kind(
        vpmem.add_device(dev(0, &dir.path().join("nope"))).await,
        "invalid_argument",
    );
    assert!(vm.guest_view().pmem_devices.is_empty());

    vpmem.add_device(dev(1, &small)).await.unwrap();
    assert_kind(vpmem.add_device(dev(1, &small)).await, "already_exists");
    let pmem = vm.guest_probe().unwrap().pmem_devices().await.unwrap();
    assert_eq!(pmem.len(), 1);
    assert_eq!((pmem[0].name.as_str(), pmem[0].size_bytes), ("pmem1", 4096));

    vpmem
        .remove_device(1)
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    assert!(vm.guest_view().pmem_devices.is_empty());
    assert_kind(vpmem.remove_device(1).await, "not_found");
}

#[tokio::test]
async fn a_bad_vpmem_controller_is_refused() {
    let vm = running("pmem0").await;
    let vpmem = vm.vpmem().unwrap();
    assert_kind(
        vpmem
            .add_controller(VpmemController {
                max_devices: 0,
                max_size_bytes: 1,
            })
            .await,
        "invalid_argument",
    );
    // Still unset: a good one is accepted.
    vpmem
        .add_controller(VpmemController {
            max_devices: 1,
            max_size_bytes: 1,
        })
        .await
        .unwrap();
}

// ---------------------------------------------------------------- Network

#[tokio::test]
async fn nics_ids_and_macs_are_unique() {
    let vm = running("net").await;
    let net = vm.network().unwrap();
    net.add_nic(nic("a", "02:00:00:00:00:0a")).await.unwrap();
    match net.add_nic(nic("a", "02:00:00:00:00:0b")).await {
        Err(Error::AlreadyExists { resource, id }) => {
            assert_eq!((resource, id.as_str()), (Resource::Network, "a"));
        }
        other => panic!("{other:?}"),
    }
    match net.add_nic(nic("b", "02:00:00:00:00:0a")).await {
        Err(Error::AlreadyExists { id, .. }) => assert_eq!(id, "02:00:00:00:00:0a"),
        other => panic!("{other:?}"),
    }
    let mut bad = nic("c", "02:00:00:00:00:0c");
    bad.id = "has space".into();
    assert_kind(net.add_nic(bad).await, "invalid_argument");
    let mut bad = nic("c", "02:00:00:00:00:0c");
    bad.endpoint = String::new();
    assert_kind(net.add_nic(bad).await, "invalid_argument");

    net.add_nic(nic("b", "02:00:00:00:00:0b")).await.unwrap();
    let seen = vm
        .guest_probe()
        .unwrap()
        .network_interfaces()
        .await
        .unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].name, "eth0");
    assert_eq!(seen[0].mac, mac("02:00:00:00:00:0a"));
    assert_eq!(seen[1].name, "eth1");
    assert!(seen.iter().all(|n| n.link_up));

    net.remove_nic("a").await.unwrap().wait(LONG).await.unwrap();
    assert_kind(net.remove_nic("a").await, "not_found");
    // The MAC is free again once released, and the name eth0 too.
    net.add_nic(nic("c", "02:00:00:00:00:0a")).await.unwrap();
    let seen = vm.guest_view().nics;
    assert!(
        seen.iter()
            .any(|n| n.name == "eth0" && n.mac == mac("02:00:00:00:00:0a"))
    );
}

#[test]
fn bad_mac_strings_do_not_parse() {
    for bad in [
        "",
        "02:00:00:00:00",
        "zz:00:00:00:00:00",
        "01:00:00:00:00:01",
        "00:00:00:00:00:00",
    ] {
        assert!(bad.parse::<MacAddress>().is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------- Shares

#[tokio::test]
async fn share_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let vm = running("sh").await;
    let shares = vm.shared_folders().unwrap();
    let mut s = share(ShareKind::VirtioFs, "", dir.path());
    assert_kind(shares.add_share(s.clone()).await, "invalid_argument");
    s.name = "data".into();
    s.host_path = "relative/dir".into();
    assert_kind(shares.add_share(s.clone()).await, "invalid_argument");
    s.host_path = dir.path().join("missing");
    assert_kind(shares.add_share(s.clone()).await, "invalid_argument");
    s.host_path = image(dir.path(), "file", 1);
    assert_kind(shares.add_share(s.clone()).await, "invalid_argument");
    s.host_path = dir.path().to_path_buf();
    s.allowed_files = vec!["../escape".into()];
    assert_kind(shares.add_share(s.clone()).await, "invalid_argument");
    assert!(vm.guest_view().shares.is_empty());

    s.allowed_files.clear();
    shares.add_share(s.clone()).await.unwrap();
    assert_kind(shares.add_share(s.clone()).await, "already_exists");
    // Same name, other kind: a different share.
    let mut p9 = s.clone();
    p9.kind = ShareKind::Plan9;
    shares.add_share(p9).await.unwrap();
    assert_eq!(vm.guest_view().shares.len(), 2);

    assert_kind(
        shares.remove_share(ShareKind::Vsmb, "data").await,
        "not_found",
    );
    shares
        .remove_share(ShareKind::VirtioFs, "data")
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    assert_kind(
        shares.remove_share(ShareKind::VirtioFs, "data").await,
        "not_found",
    );
    assert_eq!(vm.guest_view().shares.len(), 1);
}

#[tokio::test]
async fn the_guest_reads_and_writes_the_host_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"alpha").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.txt"), b"beta").unwrap();
    let vm = running("files").await;
    vm.shared_folders()
        .unwrap()
        .add_share(share(ShareKind::VirtioFs, "data", dir.path()))
        .await
        .unwrap();
    let probe = vm.guest_probe().unwrap();
    let seen = probe.shares().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].tag.as_str(), seen[0].read_only), ("data", false));
    assert_eq!(
        probe.list_share("data").await.unwrap(),
        ["a.txt", "sub/b.txt"]
    );
    assert_eq!(
        probe.read_share_file("data", "sub/b.txt").await.unwrap(),
        b"beta"
    );

    probe
        .write_share_file("data", "c.txt", b"gamma")
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join("c.txt")).unwrap(), b"gamma");
    assert_eq!(
        probe.list_share("data").await.unwrap(),
        ["a.txt", "c.txt", "sub/b.txt"]
    );
    assert_kind(
        probe.read_share_file("data", "../etc/passwd").await,
        "invalid_argument",
    );
    assert_kind(
        probe.read_share_file("data", "/etc/passwd").await,
        "invalid_argument",
    );
    assert_eq!(
        io_kind(probe.read_share_file("data", "missing").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        io_kind(probe.list_share("other").await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn read_only_and_allowed_files_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("visible"), b"v").unwrap();
    std::fs::write(dir.path().join("hidden"), b"h").unwrap();
    let vm = running("ro-share").await;
    let mut s = share(ShareKind::Plan9, "ro", dir.path());
    s.read_only = true;
    s.allowed_files = vec!["visible".into(), "absent".into()];
    vm.shared_folders().unwrap().add_share(s).await.unwrap();
    let probe = vm.guest_probe().unwrap();
    assert!(probe.shares().await.unwrap()[0].read_only);
    assert_eq!(probe.list_share("ro").await.unwrap(), ["visible"]);
    assert_eq!(probe.read_share_file("ro", "visible").await.unwrap(), b"v");
    assert_eq!(
        io_kind(probe.read_share_file("ro", "hidden").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        io_kind(probe.write_share_file("ro", "visible", b"x").await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(std::fs::read(dir.path().join("visible")).unwrap(), b"v");
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_cannot_lead_out_of_a_share() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
    let vm = running("link").await;
    vm.shared_folders()
        .unwrap()
        .add_share(share(ShareKind::VirtioFs, "d", dir.path()))
        .await
        .unwrap();
    let probe = vm.guest_probe().unwrap();
    assert!(probe.list_share("d").await.unwrap().is_empty());
    assert_eq!(
        io_kind(probe.read_share_file("d", "link").await),
        ErrorKind::PermissionDenied
    );
}

// ---------------------------------------------------------------- PCI and resources

#[tokio::test]
async fn pci_devices_are_unique_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let vm = running("pci").await;
    let pci = vm.pci().unwrap();
    let dev = PciDevice {
        id: "gpu0".into(),
        host_path: dir.path().to_path_buf(),
        virtual_function: Some(1),
    };
    pci.add_device(dev.clone()).await.unwrap();
    assert_kind(pci.add_device(dev.clone()).await, "already_exists");
    let mut missing = dev.clone();
    missing.id = "gpu1".into();
    missing.host_path = dir.path().join("nope");
    assert_kind(pci.add_device(missing).await, "invalid_argument");
    pci.remove_device("gpu0")
        .await
        .unwrap()
        .wait(LONG)
        .await
        .unwrap();
    assert_kind(pci.remove_device("gpu0").await, "not_found");
    pci.add_device(dev).await.unwrap();
}

#[tokio::test]
async fn memory_processor_and_cpu_group_updates() {
    let vm = running("res").await;
    let memory = vm.memory().unwrap();
    assert_kind(
        memory.update_memory(MIN_MEMORY_MIB - 1).await,
        "invalid_argument",
    );
    assert_kind(
        memory.update_memory(MAX_MEMORY_MIB + 1).await,
        "invalid_argument",
    );
    assert_eq!(vm.memory_mib(), 512);
    memory.update_memory(2048).await.unwrap();
    assert_eq!(vm.stats().await.unwrap().memory.assigned_bytes, 2048 << 20);

    let processor = vm.processor().unwrap();
    assert_kind(
        processor.update_limits(ProcessorLimits::default()).await,
        "invalid_argument",
    );
    assert_kind(
        processor
            .update_limits(ProcessorLimits {
                weight: Some(0),
                ..Default::default()
            })
            .await,
        "invalid_argument",
    );
    processor
        .update_limits(ProcessorLimits {
            limit: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap();
    processor
        .update_limits(ProcessorLimits {
            weight: Some(200),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        vm.processor_limits(),
        ProcessorLimits {
            limit: Some(5000),
            weight: Some(200),
            reservation: None
        }
    );

    let group = vm.cpu_group().unwrap();
    assert_kind(group.set_cpu_group("").await, "invalid_argument");
    assert_kind(group.set_cpu_group("a/b").await, "invalid_argument");
    assert_eq!(vm.cpu_group_id(), None);
    group
        .set_cpu_group("5a0b7f3e-0000-4c1e-9f00-000000000001")
        .await
        .unwrap();
    assert_eq!(
        vm.cpu_group_id().as_deref(),
        Some("5a0b7f3e-0000-4c1e-9f00-000000000001")
    );
}

#[tokio::test]
async fn devices_cannot_change_while_paused_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 512);
    for state in [State::Paused, State::Stopped] {
        let vm = in_state("frozen", state).await;
        assert_invalid_state(vm.scsi().unwrap().add_controller(1).await, state);
        assert_invalid_state(vm.scsi().unwrap().add_disk(disk(0, 0, &img)).await, state);
        assert_invalid_state(
            vm.network()
                .unwrap()
                .add_nic(nic("n", "02:00:00:00:00:01"))
                .await,
            state,
        );
        assert_invalid_state(vm.memory().unwrap().update_memory(1024).await, state);
        assert_invalid_state(vm.network().unwrap().remove_nic("n").await, state);
        if state == State::Paused {
            vm.stop(StopMode::Force).await.unwrap();
        }
    }
}
