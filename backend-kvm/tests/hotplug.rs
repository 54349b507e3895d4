//! ACPI PCI hotplug of a prepared VM, driven through its own port bus the
//! way the guest's `_GPE._E01` method and acpiphp would (no vCPU runs:
//! this host's /dev/kvm cannot boot Linux), and the managers' cold plug,
//! state rules and stop-time completion on real-mode VMs. Without
//! /dev/kvm they print "SKIPPED: ..." and return.

#![cfg(test)]

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uvm_api::{
    DiskFormat, Error, ImageFormat, Operation, Resource, ScsiDisk, State, StopMode, Uvm,
    VpmemController, VpmemDevice,
};
use uvm_backend_kvm::KvmBackend;
use uvm_backend_kvm::arch::boot::BootSpec;
use uvm_backend_kvm::build::{self, Prepared};
use uvm_backend_kvm::console::ConsoleTap;
use uvm_backend_kvm::exits::ExitCounters;
use uvm_backend_kvm::pci::hub::{DeviceHub, HubError};
use uvm_backend_kvm::pci::memslots::{ExtraMemory, MappingOwner};
use uvm_devices::acpi::pci_hotplug::{PCIHP_BASE, PCIHP_GPE};
use uvm_devices::acpi::pm::{GPE0_OFFSET, PM_BASE};
use uvm_devices::virtio::scsi::VirtioScsiDevice;
use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};
use vm_memory::mmap::MmapRegion;

use support::{config, kvm_missing, spin_payload};

fn prepared(hub: &Arc<DeviceHub>) -> Prepared {
    let device = VsockDevice::new(
        3,
        VsockHost::new(3).backend(),
        &tokio::runtime::Handle::current(),
    );
    build::prepare(
        &config("hotplug"),
        &BootSpec::Payload(spin_payload()),
        Arc::new(ConsoleTap::default()),
        Box::new(device),
        hub,
        &ExitCounters::default(),
    )
    .unwrap()
}

fn read32(vm: &Prepared, port: u64) -> u32 {
    let mut d = [0u8; 4];
    assert!(vm.io_bus().read(port, &mut d), "port {port:#x} not decoded");
    u32::from_le_bytes(d)
}

fn vendor_device(vm: &Prepared, slot: u8) -> u32 {
    let address = 0x8000_0000u32 | (u32::from(slot) << 11);
    assert!(vm.io_bus().write(0xcf8, &address.to_le_bytes()));
    let mut d = [0u8; 4];
    assert!(vm.io_bus().read(0xcfc, &mut d));
    u32::from_le_bytes(d)
}

/// What the guest's ACPI does once it is up: enable the hotplug GPE.
fn enable_hotplug_gpe(vm: &Prepared) {
    let enable = GPE0_STS + 4;
    assert!(
        vm.io_bus()
            .write(enable, &(1u32 << PCIHP_GPE).to_le_bytes())
    );
}

const UP: u64 = PCIHP_BASE as u64;
const DOWN: u64 = PCIHP_BASE as u64 + 4;
const EJECT: u64 = PCIHP_BASE as u64 + 8;
const GPE0_STS: u64 = PM_BASE as u64 + GPE0_OFFSET as u64;
/// virtio vendor id | (0x1040 + 8, virtio-scsi) << 16.
const VIRTIO_SCSI_ID: u32 = 0x1048_1af4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_add_and_eject_go_through_the_register_block_and_gpe() {
    if kvm_missing() {
        return;
    }
    let hub = Arc::new(DeviceHub::new("hotplug"));
    let vm = prepared(&hub);
    assert_eq!(vendor_device(&vm, 2), u32::MAX, "slot 2 starts empty");

    hub.plug(2, "scsi", Box::new(VirtioScsiDevice::new(1)), None)
        .unwrap();
    assert_eq!(vendor_device(&vm, 2), VIRTIO_SCSI_ID);
    assert_ne!(read32(&vm, GPE0_STS) & (1 << PCIHP_GPE), 0, "GPE raised");
    assert_eq!(read32(&vm, UP), 1 << 2, "slot 2 reported up");
    assert_eq!(read32(&vm, UP), 0, "reported once");
    assert!(matches!(
        hub.plug(2, "again", Box::new(VirtioScsiDevice::new(1)), None),
        Err(HubError::SlotInUse(2))
    ));

    enable_hotplug_gpe(&vm);
    let ejected = Arc::new(AtomicBool::new(false));
    let flag = ejected.clone();
    let release = hub.unplug(2).unwrap();
    release.on_release(move || flag.store(true, Ordering::SeqCst));
    assert!(!release.is_released(), "a running VM waits for the guest");
    assert_eq!(read32(&vm, DOWN), 1 << 2, "removal requested");
    assert!(matches!(hub.unplug(2), Err(HubError::AlreadyRemoving(2))));
    assert_eq!(
        vendor_device(&vm, 2),
        VIRTIO_SCSI_ID,
        "still there before the eject"
    );
    assert!(!ejected.load(Ordering::SeqCst));

    // The guest's _EJ0 writes the slot bit; the control thread then calls on_eject.
    assert!(vm.io_bus().write(EJECT, &(1u32 << 2).to_le_bytes()));
    assert_eq!(read32(&vm, DOWN), 0);
    hub.on_eject(2);
    assert!(ejected.load(Ordering::SeqCst));
    assert_eq!(
        vendor_device(&vm, 2),
        u32::MAX,
        "slot empty after the eject"
    );
    // The slot is free again.
    hub.plug(2, "scsi", Box::new(VirtioScsiDevice::new(1)), None)
        .unwrap();
    // A removal still pending when the VM stops completes then.
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let release = hub.unplug(2).unwrap();
    release.on_release(move || flag.store(true, Ordering::SeqCst));
    assert!(!release.is_released());
    hub.shut_down();
    assert!(stopped.load(Ordering::SeqCst));
}

/// A page-aligned anonymous mapping.
fn anonymous(len: usize) -> MmapRegion<()> {
    MmapRegion::new(len).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_memory_is_mapped_while_plugged() {
    if kvm_missing() {
        return;
    }
    let hub = Arc::new(DeviceHub::new("hotplug-mem"));
    let vm = prepared(&hub);
    let backing = anonymous(2 << 20);
    let memory = ExtraMemory {
        guest_address: 64 << 30,
        host_address: backing.as_ptr() as u64,
        len: 2 << 20,
        read_only: true,
        owner: MappingOwner::new(Box::new(backing)),
    };
    hub.plug(6, "pmem", Box::new(VirtioScsiDevice::new(1)), Some(memory))
        .unwrap();
    enable_hotplug_gpe(&vm);
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let release = hub.unplug(6).unwrap();
    release.on_release(move || flag.store(true, Ordering::SeqCst));
    assert!(!release.is_released());
    hub.on_eject(6);
    assert!(done.load(Ordering::SeqCst));
    // A second device may take the same guest range (the slot was deleted).
    let backing = anonymous(2 << 20);
    let memory = ExtraMemory {
        guest_address: 64 << 30,
        host_address: backing.as_ptr() as u64,
        len: 2 << 20,
        read_only: false,
        owner: MappingOwner::new(Box::new(backing)),
    };
    hub.plug(6, "pmem", Box::new(VirtioScsiDevice::new(1)), Some(memory))
        .unwrap();
    drop(vm);
    hub.shut_down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_while_the_guest_boots_is_immediate() {
    if kvm_missing() {
        return;
    }
    let hub = Arc::new(DeviceHub::new("hotplug-early"));
    let vm = prepared(&hub);
    hub.plug(4, "scsi", Box::new(VirtioScsiDevice::new(1)), None)
        .unwrap();
    // No GPE enabled, no decoding: the guest cannot be using it.
    let done = hub.unplug(4).unwrap();
    assert!(done.is_released(), "completed at once");
    assert_eq!(vendor_device(&vm, 4), u32::MAX);
    assert_eq!(read32(&vm, DOWN), 0, "no eject request left behind");
    hub.shut_down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eject_without_a_removal_is_ignored() {
    if kvm_missing() {
        return;
    }
    let hub = Arc::new(DeviceHub::new("hotplug-stray"));
    let vm = prepared(&hub);
    hub.plug(3, "scsi", Box::new(VirtioScsiDevice::new(1)), None)
        .unwrap();
    assert!(vm.io_bus().write(EJECT, &(1u32 << 3).to_le_bytes()));
    hub.on_eject(3);
    assert_eq!(vendor_device(&vm, 3), VIRTIO_SCSI_ID, "the device stays");
    hub.shut_down();
}

fn image(dir: &Path, name: &str, len: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![0x5a; len]).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_plugged_devices_boot_and_pending_removals_complete_at_stop() {
    if kvm_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = |lun| ScsiDisk {
        controller: 0,
        lun,
        path: image(dir.path(), &format!("d{lun}"), 1 << 20),
        format: DiskFormat::Raw,
        read_only: false,
    };
    let mut cfg = config("cold");
    cfg.devices.scsi_controllers = 1;
    cfg.devices.scsi_disks.push(disk(0));
    let vm = KvmBackend::new()
        .create_with_payload(cfg, spin_payload())
        .unwrap();
    assert!(vm.supported(Resource::Scsi, Operation::Add));
    assert!(vm.supported(Resource::VPMem, Operation::Remove));
    assert!(!vm.supported(Resource::Pci, Operation::Add));
    let scsi = vm.scsi().unwrap();
    assert!(matches!(
        scsi.add_disk(disk(0)).await,
        Err(Error::AlreadyExists { .. })
    ));
    let mut qcow = disk(1);
    qcow.format = DiskFormat::Qcow2;
    assert!(matches!(
        scsi.add_disk(qcow).await,
        Err(Error::InvalidArgument { .. })
    ));
    // Before start a removal completes at once and the LUN is free again.
    scsi.add_disk(disk(1)).await.unwrap();
    let removal = scsi.remove_disk(0, 1).await.unwrap();
    assert!(removal.is_complete());
    scsi.add_disk(disk(1)).await.unwrap();

    let vpmem = vm.vpmem().unwrap();
    vpmem
        .add_controller(VpmemController {
            max_devices: 4,
            max_size_bytes: 8 << 20,
        })
        .await
        .unwrap();
    let pmem = VpmemDevice {
        id: 0,
        path: image(dir.path(), "p0", 2 << 20),
        read_only: true,
        format: ImageFormat::Raw,
    };
    vpmem.add_device(pmem.clone()).await.unwrap();
    let odd = VpmemDevice {
        id: 1,
        path: image(dir.path(), "p1", 4096),
        ..pmem.clone()
    };
    assert!(matches!(
        vpmem.add_device(odd).await,
        Err(Error::InvalidArgument { .. })
    ));

    vm.start().await.unwrap();
    // This guest never brings up ACPI or a driver: removals while running
    // complete at once (nothing to eject), and the ids are free again.
    scsi.add_controller(1).await.unwrap();
    let controller_removal = scsi.remove_controller(1).await.unwrap();
    assert!(controller_removal.is_complete());
    scsi.add_controller(1).await.unwrap();
    let pmem_removal = vpmem.remove_device(0).await.unwrap();
    assert!(pmem_removal.is_complete());
    vpmem.add_device(pmem.clone()).await.unwrap();
    assert!(matches!(
        vpmem.add_device(pmem.clone()).await,
        Err(Error::AlreadyExists { .. })
    ));
    let controller_removal = scsi.remove_controller(1).await.unwrap();
    let pmem_removal = vpmem.remove_device(0).await.unwrap();
    vm.pause().await.unwrap();
    assert!(matches!(
        scsi.add_controller(2).await,
        Err(Error::InvalidState {
            state: State::Paused,
            ..
        })
    ));
    vm.stop(StopMode::Force).await.unwrap();
    // The guest never ejected: the stop completes both removals.
    controller_removal
        .wait(Duration::from_secs(5))
        .await
        .unwrap();
    pmem_removal.wait(Duration::from_secs(5)).await.unwrap();
    assert!(matches!(
        scsi.add_controller(3).await,
        Err(Error::InvalidState {
            state: State::Stopped,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_boot_device_fails_create() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("bad-boot");
    cfg.devices.scsi_controllers = 1;
    cfg.devices.scsi_disks.push(ScsiDisk {
        controller: 0,
        lun: 0,
        path: image(dir.path(), "q", 4096),
        format: DiskFormat::Qcow2,
        read_only: false,
    });
    let refused = KvmBackend::new().create_vm(cfg);
    assert!(
        matches!(refused, Err(Error::InvalidArgument { ref argument, .. }) if argument == "format"),
        "{:?}",
        refused.err()
    );
}

/// Pids of this process's `virtiofsd` children.
fn virtiofsd_children() -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm.ends_with("(virtiofsd") && ppid == Some(me) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_run_one_daemon_each_and_stop_them_with_the_vm() {
    if kvm_missing() {
        return;
    }
    let Some(virtiofsd) = uvm_devices::virtio::fs::find_virtiofsd() else {
        eprintln!("SKIPPED: virtiofsd not installed (cargo install virtiofsd --locked)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
    let share = |name: &str, kind| uvm_api::SharedFolder {
        kind,
        name: name.into(),
        host_path: dir.path().to_path_buf(),
        read_only: true,
        allowed_files: vec!["a.txt".into()],
    };
    let mut cfg = config("shares");
    cfg.devices
        .shares
        .push(share("boot", uvm_api::ShareKind::VirtioFs));
    let vm = KvmBackend::with_virtiofsd(Some(virtiofsd))
        .create_with_payload(cfg, spin_payload())
        .unwrap();
    assert!(vm.supported(Resource::VirtioFs, Operation::Add));
    assert!(!vm.supported(Resource::Plan9, Operation::Add));
    let shares = vm.shared_folders().unwrap();
    assert!(matches!(
        shares
            .add_share(share("p9", uvm_api::ShareKind::Plan9))
            .await,
        Err(Error::NotSupported { .. })
    ));
    assert!(matches!(
        shares
            .add_share(share("boot", uvm_api::ShareKind::VirtioFs))
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        shares
            .add_share(share(&"x".repeat(37), uvm_api::ShareKind::VirtioFs))
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(virtiofsd_children().len(), 1);
    vm.start().await.unwrap();
    shares
        .add_share(share("hot", uvm_api::ShareKind::VirtioFs))
        .await
        .unwrap();
    assert_eq!(virtiofsd_children().len(), 2);
    let removal = shares
        .remove_share(uvm_api::ShareKind::VirtioFs, "hot")
        .await
        .unwrap();
    assert!(removal.is_complete(), "the guest never used it");
    assert_eq!(virtiofsd_children().len(), 1, "its daemon stopped");
    vm.stop(StopMode::Force).await.unwrap();
    assert!(virtiofsd_children().is_empty(), "daemons stop with the VM");

    let without = KvmBackend::with_virtiofsd(None)
        .create_with_payload(config("no-fs"), spin_payload())
        .unwrap();
    assert!(!without.supported(Resource::VirtioFs, Operation::Add));
    assert!(without.shared_folders().is_none());
}
