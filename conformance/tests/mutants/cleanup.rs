//! Mutants of the cleanup area.

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use uvm_api::{
    Backend, Error, Removal, Resource, Result, ScsiDisk, ShareKind, StopMode, Uvm, UvmConfig,
    VpmemDevice,
};
use uvm_backend_mock::FakeBackend;

use crate::Mutant;
use crate::lie::{Lie, scsi, shares, vpmem};

/// Dropping a disk's removal handle before the removal completes cancels
/// it: the disk stays, its address taken for good. (While a removal is
/// pending, its address is taken, as it must be.)
#[derive(Default)]
struct DroppedRemovalCancelled {
    taken: Arc<Mutex<HashSet<(u8, u8)>>>,
}
#[async_trait]
impl Lie for DroppedRemovalCancelled {
    async fn add_disk(&self, vm: &dyn Uvm, disk: ScsiDisk) -> Result<()> {
        if self
            .taken
            .lock()
            .unwrap()
            .contains(&(disk.controller, disk.lun))
        {
            return Err(Error::already_exists(Resource::Scsi, disk.address()));
        }
        scsi(vm).add_disk(disk).await
    }
    async fn remove_disk(&self, vm: &dyn Uvm, controller: u8, lun: u8) -> Result<Removal> {
        let inner = scsi(vm).remove_disk(controller, lun).await?;
        let (removal, completer) = Removal::pending(inner.resource(), inner.id());
        let taken = Arc::clone(&self.taken);
        taken.lock().unwrap().insert((controller, lun));
        tokio::spawn(async move {
            // The handle is given out before this runs; a caller who drops
            // it at once has dropped it by then.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = inner.wait(Duration::from_secs(30)).await;
            if completer.is_watched() {
                taken.lock().unwrap().remove(&(controller, lun));
                completer.complete();
            }
        });
        Ok(removal)
    }
}

/// VPMem images stay open after their removal completes, until the VM stops.
#[derive(Default)]
struct VpmemImageHeldAfterRemoval {
    open: Mutex<Vec<File>>,
}
#[async_trait]
impl Lie for VpmemImageHeldAfterRemoval {
    async fn add_vpmem_device(&self, vm: &dyn Uvm, device: VpmemDevice) -> Result<()> {
        let path = device.path.clone();
        vpmem(vm).add_device(device).await?;
        if let Ok(file) = File::open(&path) {
            self.open.lock().unwrap().push(file);
        }
        Ok(())
    }
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        let result = vm.stop(mode).await;
        self.open.lock().unwrap().clear();
        result
    }
}

/// The images of boot-config disks are opened at create and kept open for
/// as long as the backend lives.
#[derive(Default)]
struct BootDiskImagesHeld {
    open: Mutex<Vec<File>>,
}
#[async_trait]
impl Lie for BootDiskImagesHeld {
    async fn create(&self, backend: &FakeBackend, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        let files: Vec<File> = config
            .devices
            .scsi_disks
            .iter()
            .filter_map(|d| File::open(&d.path).ok())
            .collect();
        let vm = backend.create(config).await?;
        self.open.lock().unwrap().extend(files);
        Ok(vm)
    }
}

/// A share's removal waits for a slow guest (100 ms after the device let
/// go) and is abandoned, never completed, if the VM stops meanwhile.
#[derive(Default)]
struct ShareRemovalAbandonedOnStop {
    stopped: Arc<AtomicBool>,
}
#[async_trait]
impl Lie for ShareRemovalAbandonedOnStop {
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        self.stopped.store(true, Ordering::SeqCst);
        vm.stop(mode).await
    }
    async fn remove_share(&self, vm: &dyn Uvm, kind: ShareKind, name: &str) -> Result<Removal> {
        let inner = shares(vm).remove_share(kind, name).await?;
        let (removal, completer) = Removal::pending(inner.resource(), inner.id());
        let stopped = Arc::clone(&self.stopped);
        tokio::spawn(async move {
            let _ = inner.wait(Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stopped.load(Ordering::SeqCst) {
                drop(completer);
            } else {
                completer.complete();
            }
        });
        Ok(removal)
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "dropping a removal handle cancels the removal",
            promise: "cleanup.dropped_removal_not_cancelled",
            lie: || Box::<DroppedRemovalCancelled>::default(),
            caught_by: &["cleanup_dropped_scsi_removal_not_cancelled"],
            collateral: &[],
        },
        Mutant {
            name: "VPMem image held after its removal",
            promise: "cleanup.image_closed_after_removal",
            lie: || Box::<VpmemImageHeldAfterRemoval>::default(),
            caught_by: &["cleanup_image_closed_after_removal"],
            collateral: &[],
        },
        Mutant {
            name: "boot disk images held after stop",
            promise: "cleanup.images_closed_after_stop",
            lie: || Box::<BootDiskImagesHeld>::default(),
            caught_by: &["cleanup_images_closed_after_stop"],
            collateral: &[],
        },
        Mutant {
            name: "share removal abandoned on stop",
            promise: "cleanup.pending_removals_complete_on_stop",
            lie: || Box::<ShareRemovalAbandonedOnStop>::default(),
            caught_by: &["cleanup_pending_removals_complete_on_stop"],
            collateral: &[],
        },
    ]
}
