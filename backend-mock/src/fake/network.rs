//! Network adapters.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{Action, Error, NetworkManager, Nic, Operation, Removal, Resource, Result};

use super::core::Core;
use super::faults::FaultPoint;
use super::machine::DeviceKey;
use super::table::Table;
use super::view::{lowest_free, nic_name};

/// An adapter as the VM holds it.
#[derive(Debug, Clone)]
pub(crate) struct NicEntry {
    pub spec: Nic,
    /// The guest calls it `eth<index>`.
    pub index: usize,
}

#[derive(Debug, Default)]
pub(crate) struct NicState {
    pub nics: Table<String, NicEntry>,
}

impl Core {
    /// Adds `nic`, as guest interface `eth<index>` if given and free.
    pub(crate) fn net_add_nic(&self, nic: Nic, index: Option<usize>) -> Result<()> {
        self.require(Resource::Network, Operation::Add)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        nic.validate()?;
        if m.nics.nics.contains(&nic.id) {
            return Err(Error::already_exists(Resource::Network, nic.id));
        }
        if m.nics.nics.visible().any(|(_, n)| n.spec.mac == nic.mac) {
            return Err(Error::already_exists(
                Resource::Network,
                nic.mac.to_string(),
            ));
        }
        self.faults.take(FaultPoint::AddNic)?;
        let used: Vec<usize> = m.nics.nics.visible().map(|(_, n)| n.index).collect();
        let index = index
            .filter(|i| !used.contains(i))
            .unwrap_or_else(|| lowest_free(used));
        debug!(id = %nic.id, mac = %nic.mac, endpoint = %nic.endpoint, guest_name = %nic_name(index),
            state = %m.state, "NIC added");
        m.nics
            .nics
            .insert(nic.id.clone(), NicEntry { spec: nic, index });
        m.count("devices_added");
        Ok(())
    }

    pub(crate) fn net_remove_nic(&self, id: &str) -> Result<Removal> {
        self.require(Resource::Network, Operation::Remove)?;
        let mut m = self.lock();
        m.state.check(Action::ChangeDevices)?;
        let key = id.to_owned();
        if m.nics.nics.attached(&key).is_none() {
            return Err(Error::not_found(Resource::Network, id));
        }
        self.faults.take(FaultPoint::RemoveNic)?;
        self.begin_removal(
            &mut m,
            DeviceKey::Nic(key),
            Resource::Network,
            id.to_owned(),
        )
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
