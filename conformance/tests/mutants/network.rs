//! Mutants of the network area.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use uvm_api::{Error, MacAddress, Nic, Removal, Resource, Result, Uvm};

use crate::Mutant;
use crate::cases::scsi::Releasing;
use crate::lie::{Lie, network};

/// [`Releasing`] for NICs.
#[derive(Default)]
struct NicRemovedTwice(Releasing);
#[async_trait]
impl Lie for NicRemovedTwice {
    fn honest_backend(&self) -> uvm_backend_mock::FakeBackend {
        crate::cases::scsi::slow_to_release()
    }
    async fn remove_nic(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        let honest = network(vm).remove_nic(id);
        self.0
            .remove(Resource::Network, id.to_string(), honest)
            .await
    }
}

/// A MAC once used stays taken by its first NIC's id, removed or not.
#[derive(Default)]
struct MacNeverReleased {
    owners: Mutex<HashMap<MacAddress, String>>,
}
#[async_trait]
impl Lie for MacNeverReleased {
    async fn add_nic(&self, vm: &dyn Uvm, nic: Nic) -> Result<()> {
        let owner = self.owners.lock().unwrap().get(&nic.mac).cloned();
        if let Some(owner) = owner
            && owner != nic.id
        {
            return Err(Error::already_exists(Resource::Network, nic.id));
        }
        let (id, mac) = (nic.id.clone(), nic.mac);
        network(vm).add_nic(nic).await?;
        self.owners.lock().unwrap().insert(mac, id);
        Ok(())
    }
}

/// A NIC re-added under an id it had keeps the MAC of its first add.
#[derive(Default)]
struct ReaddKeepsOldMac {
    first: Mutex<HashMap<String, MacAddress>>,
}
#[async_trait]
impl Lie for ReaddKeepsOldMac {
    async fn add_nic(&self, vm: &dyn Uvm, mut nic: Nic) -> Result<()> {
        let cached = self.first.lock().unwrap().get(&nic.id).copied();
        if let Some(mac) = cached {
            nic.mac = mac;
        }
        let (id, mac) = (nic.id.clone(), nic.mac);
        network(vm).add_nic(nic).await?;
        self.first.lock().unwrap().entry(id).or_insert(mac);
        Ok(())
    }
}

/// NIC ids are cut to 15 bytes (the backend names a host interface after them).
struct IdsTruncated;
fn cut(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}
#[async_trait]
impl Lie for IdsTruncated {
    async fn add_nic(&self, vm: &dyn Uvm, mut nic: Nic) -> Result<()> {
        nic.id = cut(&nic.id).to_string();
        network(vm).add_nic(nic).await
    }
    async fn remove_nic(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        network(vm).remove_nic(cut(id)).await
    }
}

/// Removing a NIC that is not there is InvalidArgument instead of NotFound.
struct MissingNicInvalidArgument;
#[async_trait]
impl Lie for MissingNicInvalidArgument {
    async fn remove_nic(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        match network(vm).remove_nic(id).await {
            Err(Error::NotFound { .. }) => Err(Error::invalid_argument("id", "no such NIC")),
            other => other,
        }
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "a NIC being released can be removed again",
            promise: "network.remove_while_releasing_not_found",
            lie: || Box::<NicRemovedTwice>::default(),
            caught_by: &["network_remove_while_releasing_not_found"],
            collateral: &[],
        },
        Mutant {
            name: "a removed NIC's MAC is never released",
            promise: "network.mac_follows_nic",
            lie: || Box::<MacNeverReleased>::default(),
            caught_by: &["network_mac_follows_nic_through_removal"],
            collateral: &[],
        },
        Mutant {
            name: "a re-added NIC keeps the MAC of its first add",
            promise: "network.mac_follows_nic",
            lie: || Box::<ReaddKeepsOldMac>::default(),
            caught_by: &["network_mac_follows_nic_through_removal"],
            collateral: &[],
        },
        Mutant {
            name: "NIC ids cut to 15 bytes",
            promise: "network.ids_whole_identifiers",
            lie: || Box::new(IdsTruncated),
            caught_by: &["network_long_ids_are_distinct"],
            collateral: &[],
        },
        Mutant {
            name: "removing a missing NIC is InvalidArgument",
            promise: "network.remove_missing_not_found",
            lie: || Box::new(MissingNicInvalidArgument),
            caught_by: &[
                "network_remove_unknown_not_found",
                "network_double_remove_not_found",
            ],
            // Its second remove, while the first is pending, gets the same answer.
            collateral: &["network_remove_while_releasing_not_found"],
        },
    ]
}
