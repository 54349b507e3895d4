//! Mutants of the vpmem area.

use std::sync::Mutex;

use async_trait::async_trait;
use uvm_api::{Error, Removal, Resource, Result, Uvm, VpmemController, VpmemDevice};

use crate::Mutant;
use crate::cases::scsi::Releasing;
use crate::lie::{Lie, vpmem};

/// [`Releasing`] for VPMem devices.
#[derive(Default)]
struct DeviceRemovedTwice(Releasing);
#[async_trait]
impl Lie for DeviceRemovedTwice {
    fn honest_backend(&self) -> uvm_backend_mock::FakeBackend {
        crate::cases::scsi::slow_to_release()
    }
    async fn remove_vpmem_device(&self, vm: &dyn Uvm, id: u32) -> Result<Removal> {
        let honest = vpmem(vm).remove_device(id);
        self.0.remove(Resource::VPMem, id.to_string(), honest).await
    }
}

/// A controller with a zero limit is taken as one with a limit of one.
struct ZeroLimitsRoundedUp;
#[async_trait]
impl Lie for ZeroLimitsRoundedUp {
    async fn add_vpmem_controller(&self, vm: &dyn Uvm, c: VpmemController) -> Result<()> {
        let c = VpmemController {
            max_devices: c.max_devices.max(1),
            max_size_bytes: c.max_size_bytes.max(1),
        };
        vpmem(vm).add_controller(c).await
    }
}

/// One of the controller's limits is exclusive: `max_devices` is taken as the
/// highest slot (`LAST_SLOT`), or `max_size_bytes` as a size an image must stay
/// below.
#[derive(Default)]
struct Exclusive<const LAST_SLOT: bool> {
    controller: Mutex<Option<VpmemController>>,
}
#[async_trait]
impl<const LAST_SLOT: bool> Lie for Exclusive<LAST_SLOT> {
    async fn add_vpmem_controller(&self, vm: &dyn Uvm, c: VpmemController) -> Result<()> {
        vpmem(vm).add_controller(c).await?;
        *self.controller.lock().unwrap() = Some(c);
        Ok(())
    }
    async fn add_vpmem_device(&self, vm: &dyn Uvm, device: VpmemDevice) -> Result<()> {
        let limits = *self.controller.lock().unwrap();
        if let Some(c) = limits {
            let size = std::fs::metadata(&device.path).map(|m| m.len()).ok();
            let refused = if LAST_SLOT {
                device.id + 1 == c.max_devices
            } else {
                size == Some(c.max_size_bytes)
            };
            if refused {
                return Err(Error::invalid_argument(
                    "device",
                    "beyond the controller's limits",
                ));
            }
        }
        vpmem(vm).add_device(device).await
    }
}

/// A second controller is accepted silently (the first stays in force).
struct ControllerSetTwice;
#[async_trait]
impl Lie for ControllerSetTwice {
    async fn add_vpmem_controller(&self, vm: &dyn Uvm, c: VpmemController) -> Result<()> {
        match vpmem(vm).add_controller(c).await {
            Err(Error::AlreadySet { .. }) => Ok(()),
            other => other,
        }
    }
}

/// A device added before the controller is refused as a bad argument, not
/// as a missing controller.
struct NoControllerInvalidArgument;
#[async_trait]
impl Lie for NoControllerInvalidArgument {
    async fn add_vpmem_device(&self, vm: &dyn Uvm, device: VpmemDevice) -> Result<()> {
        match vpmem(vm).add_device(device).await {
            Err(Error::NotFound { .. }) => Err(Error::invalid_argument(
                "device",
                "no VPMem controller to put it on",
            )),
            other => other,
        }
    }
}

/// A slot whose add of a well-formed device was refused (its image does not
/// fit the controller) stays reserved: later adds there give AlreadyExists.
#[derive(Default)]
struct RefusedSlotReserved {
    refused: Mutex<Vec<u32>>,
}
#[async_trait]
impl Lie for RefusedSlotReserved {
    async fn add_vpmem_device(&self, vm: &dyn Uvm, device: VpmemDevice) -> Result<()> {
        let id = device.id;
        if self.refused.lock().unwrap().contains(&id) {
            return Err(Error::already_exists(Resource::VPMem, id.to_string()));
        }
        // The slot is taken once the device is well-formed, before the image is looked at.
        let well_formed = device.validate().is_ok();
        let result = vpmem(vm).add_device(device).await;
        if let (true, Err(Error::InvalidArgument { .. })) = (well_formed, &result) {
            self.refused.lock().unwrap().push(id);
        }
        result
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "a VPMem device being released can be removed again",
            promise: "vpmem.remove_while_releasing_not_found",
            lie: || Box::<DeviceRemovedTwice>::default(),
            caught_by: &["vpmem_remove_while_releasing_not_found"],
            collateral: &[],
        },
        Mutant {
            name: "zero VPMem controller limits are rounded up to one",
            promise: "vpmem.controller_limits_positive",
            lie: || Box::new(ZeroLimitsRoundedUp),
            caught_by: &["vpmem_zero_limit_controller_invalid_argument"],
            collateral: &[],
        },
        Mutant {
            name: "the last VPMem slot is refused",
            promise: "vpmem.limits_inclusive",
            lie: || Box::<Exclusive<true>>::default(),
            caught_by: &["vpmem_last_slot_of_max_size_accepted"],
            collateral: &[],
        },
        Mutant {
            name: "a VPMem image of exactly the size limit is refused",
            promise: "vpmem.limits_inclusive",
            lie: || Box::<Exclusive<false>>::default(),
            caught_by: &["vpmem_last_slot_of_max_size_accepted"],
            collateral: &[],
        },
        Mutant {
            name: "a second VPMem controller is accepted",
            promise: "vpmem.controller_set_once",
            lie: || Box::new(ControllerSetTwice),
            caught_by: &["vpmem_controller_set_once"],
            collateral: &[],
        },
        Mutant {
            name: "a VPMem device without controller is InvalidArgument",
            promise: "vpmem.device_needs_controller",
            lie: || Box::new(NoControllerInvalidArgument),
            caught_by: &["vpmem_device_needs_controller"],
            collateral: &[],
        },
        Mutant {
            name: "a refused VPMem image keeps its slot reserved",
            promise: "vpmem.device_within_controller_limits",
            lie: || Box::<RefusedSlotReserved>::default(),
            caught_by: &["vpmem_refused_image_leaves_slot_free"],
            collateral: &[],
        },
    ]
}
