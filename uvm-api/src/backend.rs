//! A backend: a factory of VMs with a static capability matrix.

use std::collections::BTreeSet;
use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::UvmConfig;
use crate::error::Result;
use crate::guest_os::GuestOs;
use crate::resource::{Operation, Resource};
use crate::state::Action;
use crate::uvm::Uvm;

/// What a backend can do at most. A given VM may do less (see
/// [`Uvm::supported`]), never more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The (resource, operation) pairs the backend implements.
    pub resources: BTreeSet<(Resource, Operation)>,
    /// Optional lifecycle actions it implements (pause, resume, save).
    pub actions: BTreeSet<Action>,
    /// Whether [`Backend::restore`] works.
    pub restore: bool,
}

impl Capabilities {
    /// Whether `operation` on `resource` is implemented.
    pub fn supports(&self, resource: Resource, operation: Operation) -> bool {
        self.resources.contains(&(resource, operation))
    }

    /// Every (resource, operation) pair the contract defines.
    pub fn all_resources() -> BTreeSet<(Resource, Operation)> {
        Resource::ALL
            .into_iter()
            .flat_map(|r| r.defined_operations().iter().map(move |op| (r, *op)))
            .collect()
    }
}

/// A hypervisor backend, registered in a [`crate::Registry`] under its name.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The registry name (`"kvm"`, `"mock"`, ...).
    fn name(&self) -> &str;

    /// What the backend can do at most.
    fn capabilities(&self) -> Capabilities;

    /// Whether the backend can run this guest OS.
    fn supports_guest_os(&self, os: GuestOs) -> bool;

    /// Whether the backend can run on this host now; `BackendUnavailable`
    /// says why not (for example a missing `/dev/kvm`).
    fn check_available(&self) -> Result<()> {
        Ok(())
    }

    /// Creates a VM in state `Created`, with the config's boot devices added.
    /// `UnsupportedGuestOs` for a guest the backend cannot run,
    /// `InvalidConfig` for a config that fails validation.
    async fn create(&self, config: UvmConfig) -> Result<Box<dyn Uvm>>;

    /// Recreates a VM, paused, from a snapshot written by [`Uvm::save`].
    /// A backend whose [`Capabilities::restore`] is false returns
    /// `ActionNotSupported { action: Save }` (it cannot use what save writes).
    async fn restore(&self, snapshot: &Path) -> Result<Box<dyn Uvm>>;
}
