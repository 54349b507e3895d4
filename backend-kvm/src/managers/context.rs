//! [`ManagerContext`]: what every capability manager of a VM shares: its
//! id, its state (for the lifecycle table's device rules) and its hub.

use std::sync::Arc;

use uvm_api::{Action, Error, ExitCell, Resource, Result, State};

use crate::pci::hub::{DeviceHub, HubError};

/// What every manager of a VM shares.
#[derive(Clone)]
pub struct ManagerContext {
    /// The VM's id (for logs).
    pub vm_id: String,
    /// The VM's state and exit.
    pub cell: Arc<ExitCell>,
    /// The VM's PCI slots.
    pub hub: Arc<DeviceHub>,
}

impl ManagerContext {
    /// Refuses device changes outside created and running.
    pub fn check_state(&self) -> Result<()> {
        self.cell.state().check(Action::ChangeDevices).map(|_| ())
    }

    /// Maps a hub error for `resource` to the contract's error.
    pub fn hub_error(&self, resource: Resource, e: HubError) -> Error {
        match e {
            HubError::Stopped => Error::InvalidState {
                operation: Action::ChangeDevices.as_str().into(),
                state: State::Stopped,
            },
            HubError::NoFreeSlot(range) => Error::LimitReached {
                resource,
                limit: format!("{} PCI slots ({range:?})", range.clone().count()),
            },
            other => Error::backend(other),
        }
    }
}
