//! Mutants of the pci area.

use async_trait::async_trait;
use uvm_api::{Error, PciDevice, Removal, Resource, Result, Uvm};

use crate::Mutant;
use crate::cases::scsi::Releasing;
use crate::lie::{Lie, pci};

/// [`Releasing`] for PCI devices.
#[derive(Default)]
struct PciRemovedTwice(Releasing);
#[async_trait]
impl Lie for PciRemovedTwice {
    fn honest_backend(&self) -> uvm_backend_mock::FakeBackend {
        crate::cases::scsi::slow_to_release()
    }
    async fn remove_pci_device(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        let honest = pci(vm).remove_device(id);
        self.0.remove(Resource::Pci, id.to_string(), honest).await
    }
}

/// `remove_device` of an id that is not assigned says it removed it.
struct MissingPciRemoved;
#[async_trait]
impl Lie for MissingPciRemoved {
    async fn remove_pci_device(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        match pci(vm).remove_device(id).await {
            Err(Error::NotFound { .. }) => Ok(Removal::completed(Resource::Pci, id)),
            other => other,
        }
    }
}

/// An id in use is added again without complaint (the first device stays).
struct PciIdAddedTwice;
#[async_trait]
impl Lie for PciIdAddedTwice {
    async fn add_pci_device(&self, vm: &dyn Uvm, device: PciDevice) -> Result<()> {
        match pci(vm).add_device(device).await {
            Err(Error::AlreadyExists { .. }) => Ok(()),
            other => other,
        }
    }
}

/// PCI changes while Paused or Stopped say yes and do nothing.
struct PciChangesIgnoredWhenIdle;
#[async_trait]
impl Lie for PciChangesIgnoredWhenIdle {
    async fn add_pci_device(&self, vm: &dyn Uvm, device: PciDevice) -> Result<()> {
        match pci(vm).add_device(device).await {
            Err(Error::InvalidState { .. }) => Ok(()),
            other => other,
        }
    }
    async fn remove_pci_device(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        match pci(vm).remove_device(id).await {
            Err(Error::InvalidState { .. }) => Ok(Removal::completed(Resource::Pci, id)),
            other => other,
        }
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "a PCI device being released can be removed again",
            promise: "pci.remove_while_releasing_not_found",
            lie: || Box::<PciRemovedTwice>::default(),
            caught_by: &["pci_remove_while_releasing_not_found"],
            collateral: &[],
        },
        Mutant {
            name: "removing a PCI device that is not there succeeds",
            promise: "pci.remove_missing_not_found",
            lie: || Box::new(MissingPciRemoved),
            caught_by: &[
                "pci_remove_unknown_not_found",
                "pci_double_remove_not_found",
            ],
            // Its second remove, while the first is pending, gets the same answer.
            collateral: &["pci_remove_while_releasing_not_found"],
        },
        Mutant {
            name: "a PCI id in use is added again without complaint",
            promise: "pci.id_taken_already_exists",
            lie: || Box::new(PciIdAddedTwice),
            caught_by: &[
                "pci_same_id_twice_already_exists",
                "pci_id_reserved_until_removal_completes",
            ],
            collateral: &[],
        },
        Mutant {
            name: "PCI changes while paused or stopped do nothing and say yes",
            promise: "pci.changes_refused_paused_stopped",
            lie: || Box::new(PciChangesIgnoredWhenIdle),
            caught_by: &[
                "pci_changes_while_paused_invalid_state",
                "pci_changes_after_stop_invalid_state",
            ],
            collateral: &[],
        },
    ]
}
