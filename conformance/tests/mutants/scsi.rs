//! Mutants of the scsi area (and [`Releasing`], the removal lie every device
//! area's mutants share).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use uvm_api::{Error, Removal, Resource, Result, ScsiDisk, Uvm};
use uvm_backend_mock::{FakeBackend, FakeOptions};

use crate::Mutant;
use crate::lie::{Lie, scsi};

/// Removes devices honestly, but a second remove of a device whose removal
/// is still pending answers with a (completed) removal instead of `NotFound`:
/// the backend looks up its own list of removals, not its device table.
#[derive(Default)]
pub struct Releasing {
    removals: Mutex<HashMap<String, Removal>>,
}

/// A fake whose guest takes 50 ms to let go of a removed device, so that
/// a second remove right after the first lands while the first is pending
/// (the default 2 ms could pass before it on a loaded machine).
pub fn slow_to_release() -> FakeBackend {
    FakeBackend::with_options(FakeOptions {
        eject_delay: Duration::from_millis(50),
        ..FakeOptions::default()
    })
}

impl Releasing {
    /// The remove of device `id` of `resource`, made by `honest` unless a
    /// removal of it is still pending.
    pub async fn remove(
        &self,
        resource: Resource,
        id: String,
        honest: impl Future<Output = Result<Removal>>,
    ) -> Result<Removal> {
        let pending = self
            .removals
            .lock()
            .unwrap()
            .get(&id)
            .is_some_and(|r| !r.is_complete());
        if pending {
            return Ok(Removal::completed(resource, id));
        }
        let result = honest.await;
        if let Ok(removal) = &result {
            self.removals.lock().unwrap().insert(id, removal.clone());
        }
        result
    }
}

/// [`Releasing`] for SCSI disks.
#[derive(Default)]
struct DiskRemovedTwice(Releasing);
#[async_trait]
impl Lie for DiskRemovedTwice {
    fn honest_backend(&self) -> uvm_backend_mock::FakeBackend {
        crate::cases::scsi::slow_to_release()
    }
    async fn remove_disk(&self, vm: &dyn Uvm, controller: u8, lun: u8) -> Result<Removal> {
        let id = format!("{controller}:{lun}");
        let honest = scsi(vm).remove_disk(controller, lun);
        self.0.remove(Resource::Scsi, id, honest).await
    }
}

/// `remove_controller` of a controller that is not there says it removed it.
struct UnknownControllerRemoved;
#[async_trait]
impl Lie for UnknownControllerRemoved {
    async fn remove_scsi_controller(&self, vm: &dyn Uvm, index: u8) -> Result<Removal> {
        match scsi(vm).remove_controller(index).await {
            Err(Error::NotFound { .. }) => {
                Ok(Removal::completed(Resource::Scsi, index.to_string()))
            }
            other => other,
        }
    }
}

/// `remove_disk` ignores the controller and removes the disk at that LUN of
/// controller 0.
struct RemoveIgnoresController;
#[async_trait]
impl Lie for RemoveIgnoresController {
    async fn remove_disk(&self, vm: &dyn Uvm, controller: u8, lun: u8) -> Result<Removal> {
        let _ = controller;
        scsi(vm).remove_disk(0, lun).await
    }
}

/// A controller that is there is added again without complaint.
struct ControllerAddedTwice;
#[async_trait]
impl Lie for ControllerAddedTwice {
    async fn add_scsi_controller(&self, vm: &dyn Uvm, index: u8) -> Result<()> {
        match scsi(vm).add_controller(index).await {
            Err(Error::AlreadyExists { .. }) => Ok(()),
            other => other,
        }
    }
}

/// Removing a controller that holds disks says it removed it (the disks stay).
struct BusyControllerRemoved;
#[async_trait]
impl Lie for BusyControllerRemoved {
    async fn remove_scsi_controller(&self, vm: &dyn Uvm, index: u8) -> Result<Removal> {
        match scsi(vm).remove_controller(index).await {
            Err(Error::InvalidArgument { .. }) => {
                Ok(Removal::completed(Resource::Scsi, index.to_string()))
            }
            other => other,
        }
    }
}

/// LUNs are kept in 5 bits: LUN 63 is LUN 31 (LUNs past the limit are still
/// refused).
struct HighLunsAliased;
fn cut(lun: u8) -> u8 {
    if lun < 64 { lun & 31 } else { lun }
}
#[async_trait]
impl Lie for HighLunsAliased {
    async fn add_disk(&self, vm: &dyn Uvm, mut disk: ScsiDisk) -> Result<()> {
        disk.lun = cut(disk.lun);
        scsi(vm).add_disk(disk).await
    }
    async fn remove_disk(&self, vm: &dyn Uvm, controller: u8, lun: u8) -> Result<Removal> {
        scsi(vm).remove_disk(controller, cut(lun)).await
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "a disk being released can be removed again",
            promise: "scsi.remove_while_releasing_not_found",
            lie: || Box::<DiskRemovedTwice>::default(),
            caught_by: &["scsi_remove_while_releasing_not_found"],
            collateral: &[],
        },
        Mutant {
            name: "an unknown SCSI controller is removed without complaint",
            promise: "scsi.remove_unknown_controller_not_found",
            lie: || Box::new(UnknownControllerRemoved),
            caught_by: &["scsi_remove_unknown_controller_not_found"],
            collateral: &[],
        },
        Mutant {
            name: "remove_disk ignores the controller",
            promise: "scsi.remove_disk_at_its_address",
            lie: || Box::new(RemoveIgnoresController),
            caught_by: &["scsi_remove_disk_names_its_controller"],
            collateral: &[],
        },
        Mutant {
            name: "a SCSI controller is added twice without complaint",
            promise: "scsi.controller_twice_already_exists",
            lie: || Box::new(ControllerAddedTwice),
            caught_by: &["scsi_controller_twice_already_exists"],
            collateral: &[],
        },
        Mutant {
            name: "a busy SCSI controller says it was removed",
            promise: "scsi.busy_controller_not_removable",
            lie: || Box::new(BusyControllerRemoved),
            caught_by: &["scsi_busy_controller_removal_invalid_argument"],
            collateral: &[],
        },
        Mutant {
            name: "SCSI LUNs kept in 5 bits",
            promise: "scsi.every_lun_addressable",
            lie: || Box::new(HighLunsAliased),
            caught_by: &["scsi_high_luns_remove_and_readd_at_own_address"],
            collateral: &[],
        },
    ]
}
