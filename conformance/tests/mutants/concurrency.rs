//! Mutants of the concurrency area: state one VM of a backend shares with
//! another, where the contract says each VM has its own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uvm_api::{
    Error, Removal, Resource, Result, ScsiDisk, Stats, StopMode, Uvm, VsockListener, VsockStream,
};

use crate::Mutant;
use crate::lie::{Lie, cpu_group, scsi, vsock};

/// What the VMs of one backend share in a mutant that spans them.
type BackendWide = Arc<Mutex<BTreeSet<String>>>;

/// SCSI addresses reserved across the backend: a second VM cannot use an
/// address another live VM holds (one host-side name per address). A VM
/// frees its addresses when it stops or is dropped.
#[derive(Default)]
struct ScsiAddressesBackendWide {
    /// `controller:lun@vm` of every disk a live VM holds.
    taken: BackendWide,
    /// The VMs made so far, to number them.
    made: Arc<AtomicU64>,
    /// This VM's number.
    me: u64,
}
impl ScsiAddressesBackendWide {
    fn release_mine(&self) {
        let suffix = format!("@{}", self.me);
        self.taken.lock().unwrap().retain(|k| !k.ends_with(&suffix));
    }
}
impl Drop for ScsiAddressesBackendWide {
    fn drop(&mut self) {
        self.release_mine();
    }
}
#[async_trait]
impl Lie for ScsiAddressesBackendWide {
    fn for_vm(&self) -> Option<Box<dyn Lie>> {
        Some(Box::new(ScsiAddressesBackendWide {
            taken: Arc::clone(&self.taken),
            made: Arc::clone(&self.made),
            me: self.made.fetch_add(1, Ordering::Relaxed) + 1,
        }))
    }
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        vm.stop(mode).await?;
        self.release_mine();
        Ok(())
    }
    async fn add_disk(&self, vm: &dyn Uvm, disk: ScsiDisk) -> Result<()> {
        let address = format!("{}:{}", disk.controller, disk.lun);
        let mine = format!("{address}@{}", self.me);
        let held_elsewhere = self
            .taken
            .lock()
            .unwrap()
            .iter()
            .any(|k| k.starts_with(&format!("{address}@")) && *k != mine);
        if held_elsewhere {
            return Err(Error::AlreadyExists {
                resource: Resource::Scsi,
                id: address,
            });
        }
        scsi(vm).add_disk(disk).await?;
        self.taken.lock().unwrap().insert(mine);
        Ok(())
    }
    async fn remove_disk(&self, vm: &dyn Uvm, controller: u8, lun: u8) -> Result<Removal> {
        let removal = scsi(vm).remove_disk(controller, lun).await?;
        self.taken
            .lock()
            .unwrap()
            .remove(&format!("{controller}:{lun}@{}", self.me));
        Ok(removal)
    }
}

/// vsock ports reserved across the backend (one host CID for every VM):
/// `listen` gives `AlreadyExists` while another VM listens on the port.
#[derive(Default)]
struct VsockPortsBackendWide {
    taken: BackendWide,
}
/// A listener that frees its backend-wide port when dropped.
struct Held {
    inner: Box<dyn VsockListener>,
    key: String,
    taken: BackendWide,
}
impl Drop for Held {
    fn drop(&mut self) {
        self.taken.lock().unwrap().remove(&self.key);
    }
}
#[async_trait]
impl VsockListener for Held {
    fn port(&self) -> u32 {
        self.inner.port()
    }
    async fn accept(&mut self) -> Result<VsockStream> {
        self.inner.accept().await
    }
}
#[async_trait]
impl Lie for VsockPortsBackendWide {
    fn for_vm(&self) -> Option<Box<dyn Lie>> {
        Some(Box::new(VsockPortsBackendWide {
            taken: Arc::clone(&self.taken),
        }))
    }
    async fn listen(&self, vm: &dyn Uvm, port: u32) -> Result<Box<dyn VsockListener>> {
        let key = format!("{port}");
        if self.taken.lock().unwrap().contains(&key) {
            return Err(Error::AlreadyExists {
                resource: Resource::VmSocket,
                id: key,
            });
        }
        let inner = vsock(vm).listen(port).await?;
        self.taken.lock().unwrap().insert(key.clone());
        Ok(Box::new(Held {
            inner,
            key,
            taken: Arc::clone(&self.taken),
        }))
    }
}

/// One CPU group for the whole backend: setting it on one VM shows it on all.
#[derive(Default)]
struct CpuGroupBackendWide {
    group: Arc<Mutex<Option<String>>>,
}
#[async_trait]
impl Lie for CpuGroupBackendWide {
    fn for_vm(&self) -> Option<Box<dyn Lie>> {
        Some(Box::new(CpuGroupBackendWide {
            group: Arc::clone(&self.group),
        }))
    }
    async fn set_cpu_group(&self, vm: &dyn Uvm, group_id: &str) -> Result<()> {
        cpu_group(vm).set_cpu_group(group_id).await?;
        *self.group.lock().unwrap() = Some(group_id.to_owned());
        Ok(())
    }
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if let Some(group) = self.group.lock().unwrap().clone() {
            stats.cpu_group = Some(group);
        }
        Ok(stats)
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "scsi addresses reserved across the backend",
            promise: "concurrency.devices_per_vm",
            lie: || Box::<ScsiAddressesBackendWide>::default(),
            caught_by: &["concurrency_scsi_disk_stays_in_its_vm"],
            collateral: &["scsi_cold_and_hot_plug_agree"],
        },
        Mutant {
            name: "vsock ports reserved across the backend",
            promise: "concurrency.vsock_ports_per_vm",
            lie: || Box::<VsockPortsBackendWide>::default(),
            caught_by: &["concurrency_vsock_ports_are_per_vm"],
            collateral: &[],
        },
        Mutant {
            name: "one cpu group for every vm of the backend",
            promise: "concurrency.updates_per_vm",
            lie: || Box::<CpuGroupBackendWide>::default(),
            caught_by: &["concurrency_resource_updates_stay_in_their_vm"],
            collateral: &[],
        },
    ]
}
