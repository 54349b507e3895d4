//! Network adapters.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{Action, Error, NetworkManager, Nic, Operation, Removal, Resource, Result};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;
use crate::fake::guest::naming::{lowest_free, nic_name};
use crate::fake::removal::Unplug;
use crate::fake::state::network::NicEntry;

impl Core {
    /// Adds `nic`, as guest interface `eth<index>` if given and free.
    pub(crate) fn net_add_nic(&self, nic: Nic, index: Option<usize>) -> Result<()> {
        self.require(Resource::Network, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        nic.validate()?;
        if m.nics.nics.contains(&nic.id) {
            return Err(Error::already_exists(Resource::Network, nic.id));
        }
        if m.nics
            .nics
            .iter_visible()
            .any(|(_, n)| n.spec.mac == nic.mac)
        {
            return Err(Error::already_exists(
                Resource::Network,
                nic.mac.to_string(),
            ));
        }
        self.faults.take(FaultPoint::AddNic)?;
        let used: Vec<usize> = m.nics.nics.iter_visible().map(|(_, n)| n.index).collect();
        let index = index
            .filter(|i| !used.contains(i))
            .unwrap_or_else(|| lowest_free(used));
        debug!(id = %nic.id, mac = %nic.mac, endpoint = %nic.endpoint, guest_name = %nic_name(index),
            state = %self.state(), "NIC added");
        let id = nic.id.clone();
        let entry = NicEntry { spec: nic, index };
        m.attach(
            |m| &mut m.nics.nics,
            id.clone(),
            entry,
            Resource::Network,
            id,
        )
    }

    pub(crate) fn net_remove_nic(&self, id: &str) -> Result<Removal> {
        let unplug = Unplug {
            resource: Resource::Network,
            id: id.to_owned(),
            table: |m| &mut m.nics.nics,
            key: id.to_owned(),
            fault: FaultPoint::RemoveNic,
        };
        self.unplug(unplug, |_| Ok(()))
    }
}

#[async_trait]
impl NetworkManager for Core {
    async fn add_nic(&self, nic: Nic) -> Result<()> {
        self.traced("network add_nic", async { self.net_add_nic(nic, None) })
            .await
    }

    async fn remove_nic(&self, id: &str) -> Result<Removal> {
        self.traced("network remove_nic", async { self.net_remove_nic(id) })
            .await
    }
}
