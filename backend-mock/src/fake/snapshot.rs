//! Save and restore: a JSON snapshot of a paused fake VM.
//!
//! The snapshot holds the configuration, the devices attached at save time
//! (with the names the guest knows them by), resource settings, the guest's
//! echo listeners and the elapsed uptime and running time. Host-side objects
//! (vsock listeners, removal handles) do not survive; devices whose removal
//! was pending are left out, since the host side of their removal was done.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::info;
use uvm_api::{
    Action, Error, Nic, PciDevice, ProcessorLimits, Result, ScsiDisk, SharedFolder, State,
    UvmConfig, VpmemController, VpmemDevice,
};

use super::clock::Clock;
use super::core::{Core, blocking};
use super::fault_point::FaultPoint;
use super::machine::Machine;
use super::options::FakeOptions;

const FORMAT: &str = "uvm-mock-snapshot";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct SavedDisk {
    disk: ScsiDisk,
    guest_name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedNic {
    nic: Nic,
    guest_index: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedDevices {
    scsi_controllers: Vec<u8>,
    scsi_disks: Vec<SavedDisk>,
    vpmem: Option<VpmemController>,
    vpmem_devices: Vec<VpmemDevice>,
    nics: Vec<SavedNic>,
    shares: Vec<SharedFolder>,
    pci: Vec<PciDevice>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    format: String,
    version: u32,
    config: UvmConfig,
    devices: SavedDevices,
    processor_limits: ProcessorLimits,
    cpu_group: Option<String>,
    uptime: Duration,
    running: Duration,
    guest_echo_ports: Vec<u32>,
    counters: BTreeMap<String, u64>,
}

impl Snapshot {
    fn capture(m: &Machine, now: Instant) -> Snapshot {
        let devices = SavedDevices {
            scsi_controllers: m
                .scsi
                .controllers
                .iter_attached()
                .map(|(i, ())| *i)
                .collect(),
            scsi_disks: m
                .scsi
                .disks
                .iter_attached()
                .map(|(_, d)| SavedDisk {
                    disk: d.spec.clone(),
                    guest_name: d.name.clone(),
                })
                .collect(),
            vpmem: m.vpmem.controller,
            vpmem_devices: m
                .vpmem
                .devices
                .iter_attached()
                .map(|(_, p)| p.spec.clone())
                .collect(),
            nics: m
                .nics
                .nics
                .iter_attached()
                .map(|(_, n)| SavedNic {
                    nic: n.spec.clone(),
                    guest_index: n.index,
                })
                .collect(),
            shares: m
                .shares
                .shares
                .iter_attached()
                .map(|(_, s)| s.clone())
                .collect(),
            pci: m
                .pci
                .devices
                .iter_attached()
                .map(|(_, d)| d.clone())
                .collect(),
        };
        Snapshot {
            format: FORMAT.to_owned(),
            version: VERSION,
            config: m.config.clone(),
            devices,
            processor_limits: m.resources.limits,
            cpu_group: m.resources.cpu_group.clone(),
            uptime: m.clock.uptime(now),
            running: m.clock.running(now),
            guest_echo_ports: m.vsock.guest_echo.iter().copied().collect(),
            counters: m.counters.clone(),
        }
    }

    /// Reads and checks a snapshot file.
    pub async fn read(path: &Path) -> Result<Snapshot> {
        let owned = path.to_path_buf();
        let bytes = blocking(move || {
            std::fs::read(&owned)
                .map_err(|e| Error::io(format!("reading snapshot {}", owned.display()), e))
        })
        .await?;
        let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid_argument(
                "snapshot",
                format!("{} is not a mock snapshot: {e}", path.display()),
            )
        })?;
        if snapshot.format != FORMAT || snapshot.version != VERSION {
            return Err(Error::invalid_argument(
                "snapshot",
                format!(
                    "{} is {} version {}, expected {FORMAT} version {VERSION}",
                    path.display(),
                    snapshot.format,
                    snapshot.version
                ),
            ));
        }
        snapshot.config.validate()?;
        Ok(snapshot)
    }

    /// The configuration of the saved VM.
    pub fn config(&self) -> &UvmConfig {
        &self.config
    }

    /// Rebuilds the VM, paused, with the saved devices added through the
    /// same manager code as any other (so a profile lacking them refuses).
    pub fn rebuild(self, options: FakeOptions) -> Result<Arc<Core>> {
        let core = Core::new(self.config.clone(), options);
        let d = self.devices;
        for index in d.scsi_controllers {
            core.scsi_add_controller(index)?;
        }
        for saved in d.scsi_disks {
            core.scsi_add_disk(saved.disk, Some(&saved.guest_name))?;
        }
        if let Some(controller) = d.vpmem {
            core.vpmem_add_controller(controller)?;
        }
        for device in d.vpmem_devices {
            core.vpmem_add_device(device)?;
        }
        for saved in d.nics {
            core.net_add_nic(saved.nic, Some(saved.guest_index))?;
        }
        for share in d.shares {
            core.share_add(share)?;
        }
        for device in d.pci {
            core.pci_add(device)?;
        }
        {
            let mut m = core.lock();
            m.resources.limits = self.processor_limits;
            m.resources.cpu_group = self.cpu_group;
            m.vsock.guest_echo = self.guest_echo_ports.into_iter().collect();
            m.counters = self.counters;
            m.count("restores");
            m.clock = Clock::restored(Instant::now(), self.uptime, self.running);
            core.set_state(State::Paused);
        }
        info!(vm = %core.id, "VM restored, paused");
        Ok(core)
    }
}

impl Core {
    pub(crate) async fn save(&self, dest: &Path) -> Result<()> {
        self.require_action(Action::Save)?;
        let snapshot = {
            let m = self.lock();
            self.state().check(Action::Save)?;
            self.faults.take(FaultPoint::Save)?;
            Snapshot::capture(&m, Instant::now())
        };
        let json = serde_json::to_vec_pretty(&snapshot).map_err(Error::backend)?;
        let owned = dest.to_path_buf();
        blocking(move || {
            std::fs::write(&owned, json)
                .map_err(|e| Error::io(format!("writing snapshot {}", owned.display()), e))
        })
        .await?;
        info!(vm = %self.id, dest = %dest.display(), "VM saved");
        Ok(())
    }
}
