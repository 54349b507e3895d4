//! Any uvm-api VM as a [`Target`]: devices added and removed through its
//! managers (`scsi()`, `network()`, `vpmem()`, `shared_folders()`), the
//! removal's end being its [`uvm_api::Removal`] completing, the guest seen
//! through its `guest_probe()`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use uvm_api::{
    DiskFormat, GuestProbe, ImageFormat, Nic, ScsiDisk, ShareKind, SharedFolder, StopMode, Uvm,
    VpmemController, VpmemDevice,
};

use super::device::{Device, Names, PMEM_MAX_BYTES, Spec};
use super::kind::Kind;
use super::target::Target;
use crate::error::{BenchError, Result};

/// Index of the SCSI controller the disks go on.
pub const CONTROLLER: u8 = 0;
/// The VPMem controller's limits.
pub const VPMEM: VpmemController = VpmemController {
    max_devices: 64,
    max_size_bytes: PMEM_MAX_BYTES,
};

fn missing(manager: &str) -> BenchError {
    BenchError::Vm(format!("the VM offers no {manager} manager"))
}

/// Adds what `kinds` need before the devices come: SCSI controller
/// [`CONTROLLER`] and the VPMem controller. Before `start`, so they are
/// there when the guest boots.
pub async fn add_controllers(vm: &dyn Uvm, kinds: &[Kind]) -> Result<()> {
    if kinds.contains(&Kind::Scsi) {
        let scsi = vm.scsi().ok_or_else(|| missing("SCSI"))?;
        scsi.add_controller(CONTROLLER)
            .await
            .map_err(BenchError::uvm(format!("add SCSI controller {CONTROLLER}")))?;
    }
    if kinds.contains(&Kind::Pmem) {
        let vpmem = vm.vpmem().ok_or_else(|| missing("VPMem"))?;
        vpmem
            .add_controller(VPMEM)
            .await
            .map_err(BenchError::uvm("add the VPMem controller"))?;
    }
    Ok(())
}

/// A running uvm-api VM.
pub struct ApiTarget {
    vm: Box<dyn Uvm>,
    vmm: &'static str,
    names: Names,
}

impl ApiTarget {
    /// Wraps a running `vm`, reported as `vmm`, naming devices with `names`.
    pub fn new(vm: Box<dyn Uvm>, vmm: &'static str, names: Names) -> Self {
        ApiTarget { vm, vmm, names }
    }

    /// The VM.
    pub fn vm(&self) -> &dyn Uvm {
        self.vm.as_ref()
    }

    /// Stops the VM by force and waits (at most 30 s) for it.
    pub async fn shut_down(self) {
        // Stopping a VM that already ended is InvalidState: not a failure here.
        let _ = self.vm.stop(StopMode::Force).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.vm.wait()).await;
    }
}

#[async_trait(?Send)]
impl Target for ApiTarget {
    fn vmm(&self) -> &'static str {
        self.vmm
    }

    fn names(&self) -> Names {
        self.names
    }

    fn probe(&self) -> Result<&dyn GuestProbe> {
        self.vm.guest_probe().ok_or_else(|| missing("guest probe"))
    }

    fn unsupported(&self, kind: Kind) -> Option<String> {
        let present = match kind {
            Kind::Scsi => self.vm.scsi().is_some(),
            Kind::Nic => self.vm.network().is_some(),
            Kind::Pmem => self.vm.vpmem().is_some(),
            Kind::Share => self.vm.shared_folders().is_some(),
        };
        (!present).then(|| match kind {
            Kind::Share => "no shared folders (no virtiofsd: set UVM_VIRTIOFSD)".to_owned(),
            other => format!("no {other} manager"),
        })
    }

    async fn add(&mut self, device: &Device) -> Result<()> {
        let context = format!("add the {}", device.mark());
        let result = match &device.spec {
            Spec::Scsi { lun, image } => {
                let scsi = self.vm.scsi().ok_or_else(|| missing("SCSI"))?;
                scsi.add_disk(ScsiDisk {
                    controller: CONTROLLER,
                    lun: *lun,
                    path: image.clone(),
                    format: DiskFormat::Raw,
                    read_only: false,
                })
                .await
            }
            Spec::Nic { id, tap, mac } => {
                let network = self.vm.network().ok_or_else(|| missing("network"))?;
                network
                    .add_nic(Nic {
                        id: id.clone(),
                        endpoint: tap.clone(),
                        mac: *mac,
                    })
                    .await
            }
            Spec::Pmem { slot, image, .. } => {
                let vpmem = self.vm.vpmem().ok_or_else(|| missing("VPMem"))?;
                vpmem
                    .add_device(VpmemDevice {
                        id: *slot,
                        path: image.clone(),
                        read_only: true,
                        format: ImageFormat::Raw,
                    })
                    .await
            }
            Spec::Share { tag, dir } => {
                let shares = self
                    .vm
                    .shared_folders()
                    .ok_or_else(|| missing("shared folder"))?;
                shares
                    .add_share(SharedFolder {
                        kind: ShareKind::VirtioFs,
                        name: tag.clone(),
                        host_path: dir.clone(),
                        read_only: false,
                        allowed_files: vec![],
                    })
                    .await
            }
        };
        result.map_err(BenchError::uvm(context))
    }

    async fn remove(&mut self, device: &Device, timeout: Duration) -> Result<Duration> {
        let context = format!("remove the {}", device.mark());
        let called = Instant::now();
        let removal = match &device.spec {
            Spec::Scsi { lun, .. } => {
                let scsi = self.vm.scsi().ok_or_else(|| missing("SCSI"))?;
                scsi.remove_disk(CONTROLLER, *lun).await
            }
            Spec::Nic { id, .. } => {
                let network = self.vm.network().ok_or_else(|| missing("network"))?;
                network.remove_nic(id).await
            }
            Spec::Pmem { slot, .. } => {
                let vpmem = self.vm.vpmem().ok_or_else(|| missing("VPMem"))?;
                vpmem.remove_device(*slot).await
            }
            Spec::Share { tag, .. } => {
                let shares = self
                    .vm
                    .shared_folders()
                    .ok_or_else(|| missing("shared folder"))?;
                shares.remove_share(ShareKind::VirtioFs, tag).await
            }
        }
        .map_err(BenchError::uvm(context.clone()))?;
        removal
            .wait(timeout)
            .await
            .map_err(BenchError::uvm(format!("{context}: wait for the guest")))?;
        Ok(called.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uvm_api::{Backend, UvmConfig};
    use uvm_backend_mock::FakeBackend;

    use super::*;
    use crate::hotplug::device::Workspace;
    use crate::hotplug::poll::Poll;
    use crate::hotplug::run::{Plan, measure};

    #[tokio::test]
    async fn measures_every_kind_on_the_fake_backend() {
        let config = UvmConfig::builder("hotplug-test").build().unwrap();
        let vm = FakeBackend::new().create(config).await.unwrap();
        add_controllers(vm.as_ref(), &Kind::ALL).await.unwrap();
        vm.start().await.unwrap();
        let mut target = ApiTarget::new(vm, "fake", Names::KVM);
        let plan = Plan {
            kinds: Kind::ALL.to_vec(),
            runs: 3,
            poll: Poll {
                gap: Duration::ZERO,
                timeout: Duration::from_secs(5),
            },
            removal_timeout: Duration::from_secs(5),
        };
        let files = Workspace::new().unwrap();
        let reports = measure(&mut target, &plan, &files).await;
        assert_eq!(reports.len(), 4);
        for report in &reports {
            assert!(report.errors.is_empty(), "{report:?}");
            assert_eq!(report.runs.len(), 3, "{report:?}");
            for run in &report.runs {
                assert!(run.probes >= 1, "{run:?}");
                assert!(run.removal_ms.is_some() && run.gone_ms.is_some(), "{run:?}");
                assert!(run.gone_ms >= run.removal_ms, "{run:?}");
            }
        }
        target.shut_down().await;
    }
}
