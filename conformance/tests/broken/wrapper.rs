//! A backend that delegates everything to the honest fake except for one flaw.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use uvm_api::{
    Action, Backend, Capabilities, CpuGroupManager, Error, ExitStatus, GuestAction,
    GuestBlockDevice, GuestNic, GuestOs, GuestPmem, GuestProbe, GuestShare, MemoryManager,
    NetworkManager, Nic, Operation, PciDevice, PciManager, ProcessorManager, Removal,
    RemovalCompleter, Resource, Result, ScsiDisk, ScsiManager, ShareKind, SharedFolder,
    SharedFolderManager, State, Stats, StopMode, StopReason, Uvm, UvmConfig, VmSocketManager,
    VpmemController, VpmemDevice, VpmemManager,
};
use uvm_backend_mock::FakeBackend;

/// The one thing a broken backend gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Claims SCSI add, but `add_disk` returns `Ok` without doing anything.
    ScsiAddDoesNothing,
    /// Answers `supported(network, add)` false, but `add_nic` adds the NIC.
    NetworkAddDenied,
    /// Panics in `stats`.
    StatsPanics,
    /// Removes devices but never completes a removal: the completer is kept forever.
    RemovalNeverCompletes,
    /// Leaks a sleeping thread per VM.
    LeaksThreadPerVm,
    /// Reports `Killed` exits as `Shutdown`.
    KilledReportedAsShutdown,
    /// Hot-added disks are never seen by the guest (the probe filters them out).
    HotAddedDiskInvisible,
}

/// A backend with one flaw.
pub struct BrokenBackend {
    inner: FakeBackend,
    flaw: Flaw,
}

impl BrokenBackend {
    pub fn new(flaw: Flaw) -> BrokenBackend {
        BrokenBackend {
            inner: FakeBackend::new(),
            flaw,
        }
    }

    fn wrap(&self, vm: Box<dyn Uvm>) -> Box<dyn Uvm> {
        if self.flaw == Flaw::LeaksThreadPerVm {
            std::thread::spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            });
        }
        Box::new(BrokenUvm {
            inner: vm,
            flaw: self.flaw,
            kept: Mutex::new(Vec::new()),
            hot_disks: Mutex::new(HashSet::new()),
        })
    }
}

#[async_trait]
impl Backend for BrokenBackend {
    fn name(&self) -> &str {
        "broken"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn supports_guest_os(&self, os: GuestOs) -> bool {
        self.inner.supports_guest_os(os)
    }

    async fn create(&self, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        match self.inner.create(config).await {
            Ok(vm) => Ok(self.wrap(vm)),
            // The refusal names the backend that refused: this one.
            Err(Error::UnsupportedGuestOs { os, .. }) => Err(Error::UnsupportedGuestOs {
                os,
                backend: self.name().to_owned(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn restore(&self, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        Ok(self.wrap(self.inner.restore(snapshot).await?))
    }
}

/// A VM with the backend's flaw.
struct BrokenUvm {
    inner: Box<dyn Uvm>,
    flaw: Flaw,
    kept: Mutex<Vec<RemovalCompleter>>,
    hot_disks: Mutex<HashSet<(u8, u8)>>,
}

impl BrokenUvm {
    fn disguise(&self, mut status: ExitStatus) -> ExitStatus {
        if self.flaw == Flaw::KilledReportedAsShutdown && status.reason == StopReason::Killed {
            status.reason = StopReason::Shutdown;
        }
        status
    }

    /// Passes a removal on, or, with the flaw, a handle that never completes.
    fn removal(&self, removal: Result<Removal>) -> Result<Removal> {
        let removal = removal?;
        if self.flaw != Flaw::RemovalNeverCompletes {
            return Ok(removal);
        }
        let (stuck, completer) = Removal::pending(removal.resource(), removal.id());
        self.kept.lock().unwrap().push(completer);
        Ok(stuck)
    }
}

#[async_trait]
impl Uvm for BrokenUvm {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn state(&self) -> State {
        self.inner.state()
    }
    async fn start(&self) -> Result<()> {
        self.inner.start().await
    }
    async fn stop(&self, mode: StopMode) -> Result<()> {
        self.inner.stop(mode).await
    }
    async fn pause(&self) -> Result<()> {
        self.inner.pause().await
    }
    async fn resume(&self) -> Result<()> {
        self.inner.resume().await
    }
    async fn save(&self, dest: &Path) -> Result<()> {
        self.inner.save(dest).await
    }
    async fn wait(&self) -> ExitStatus {
        self.disguise(self.inner.wait().await)
    }
    fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.exit_status().map(|s| self.disguise(s))
    }
    async fn stats(&self) -> Result<Stats> {
        if self.flaw == Flaw::StatsPanics {
            panic!("stats are not implemented for this backend");
        }
        self.inner.stats().await
    }
    fn supported(&self, resource: Resource, operation: Operation) -> bool {
        if self.flaw == Flaw::NetworkAddDenied
            && (resource, operation) == (Resource::Network, Operation::Add)
        {
            return false;
        }
        self.inner.supported(resource, operation)
    }
    fn supports_action(&self, action: Action) -> bool {
        self.inner.supports_action(action)
    }
    fn scsi(&self) -> Option<&dyn ScsiManager> {
        self.inner.scsi().map(|_| self as &dyn ScsiManager)
    }
    fn vpmem(&self) -> Option<&dyn VpmemManager> {
        self.inner.vpmem().map(|_| self as &dyn VpmemManager)
    }
    fn network(&self) -> Option<&dyn NetworkManager> {
        self.inner.network().map(|_| self as &dyn NetworkManager)
    }
    fn pci(&self) -> Option<&dyn PciManager> {
        self.inner.pci().map(|_| self as &dyn PciManager)
    }
    fn vm_socket(&self) -> Option<&dyn VmSocketManager> {
        self.inner.vm_socket()
    }
    fn shared_folders(&self) -> Option<&dyn SharedFolderManager> {
        self.inner
            .shared_folders()
            .map(|_| self as &dyn SharedFolderManager)
    }
    fn memory(&self) -> Option<&dyn MemoryManager> {
        self.inner.memory()
    }
    fn processor(&self) -> Option<&dyn ProcessorManager> {
        self.inner.processor()
    }
    fn cpu_group(&self) -> Option<&dyn CpuGroupManager> {
        self.inner.cpu_group()
    }
    fn guest_probe(&self) -> Option<&dyn GuestProbe> {
        self.inner.guest_probe().map(|_| self as &dyn GuestProbe)
    }
}

#[async_trait]
impl ScsiManager for BrokenUvm {
    async fn add_controller(&self, index: u8) -> Result<()> {
        self.inner.scsi().unwrap().add_controller(index).await
    }
    async fn remove_controller(&self, index: u8) -> Result<Removal> {
        self.removal(self.inner.scsi().unwrap().remove_controller(index).await)
    }
    async fn add_disk(&self, disk: ScsiDisk) -> Result<()> {
        if self.flaw == Flaw::ScsiAddDoesNothing {
            return Ok(());
        }
        let address = (disk.controller, disk.lun);
        let running = self.inner.state() == State::Running;
        self.inner.scsi().unwrap().add_disk(disk).await?;
        if running {
            self.hot_disks.lock().unwrap().insert(address);
        }
        Ok(())
    }
    async fn remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        self.removal(
            self.inner
                .scsi()
                .unwrap()
                .remove_disk(controller, lun)
                .await,
        )
    }
}

#[async_trait]
impl VpmemManager for BrokenUvm {
    async fn add_controller(&self, controller: VpmemController) -> Result<()> {
        self.inner.vpmem().unwrap().add_controller(controller).await
    }
    async fn add_device(&self, device: VpmemDevice) -> Result<()> {
        self.inner.vpmem().unwrap().add_device(device).await
    }
    async fn remove_device(&self, id: u32) -> Result<Removal> {
        self.removal(self.inner.vpmem().unwrap().remove_device(id).await)
    }
}

#[async_trait]
impl NetworkManager for BrokenUvm {
    async fn add_nic(&self, nic: Nic) -> Result<()> {
        self.inner.network().unwrap().add_nic(nic).await
    }
    async fn remove_nic(&self, id: &str) -> Result<Removal> {
        self.removal(self.inner.network().unwrap().remove_nic(id).await)
    }
}

#[async_trait]
impl PciManager for BrokenUvm {
    async fn add_device(&self, device: PciDevice) -> Result<()> {
        self.inner.pci().unwrap().add_device(device).await
    }
    async fn remove_device(&self, id: &str) -> Result<Removal> {
        self.removal(self.inner.pci().unwrap().remove_device(id).await)
    }
}

#[async_trait]
impl SharedFolderManager for BrokenUvm {
    async fn add_share(&self, share: SharedFolder) -> Result<()> {
        self.inner.shared_folders().unwrap().add_share(share).await
    }
    async fn remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal> {
        self.removal(
            self.inner
                .shared_folders()
                .unwrap()
                .remove_share(kind, name)
                .await,
        )
    }
}

#[async_trait]
impl GuestProbe for BrokenUvm {
    async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>> {
        let mut devices = self.inner.guest_probe().unwrap().block_devices().await?;
        if self.flaw == Flaw::HotAddedDiskInvisible {
            let hidden = self.hot_disks.lock().unwrap().clone();
            devices.retain(|d| d.scsi_address.is_none_or(|a| !hidden.contains(&a)));
        }
        Ok(devices)
    }
    async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner
            .guest_probe()
            .unwrap()
            .read_block(name, offset, len)
            .await
    }
    async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.inner
            .guest_probe()
            .unwrap()
            .write_block(name, offset, data)
            .await
    }
    async fn network_interfaces(&self) -> Result<Vec<GuestNic>> {
        self.inner.guest_probe().unwrap().network_interfaces().await
    }
    async fn pmem_devices(&self) -> Result<Vec<GuestPmem>> {
        self.inner.guest_probe().unwrap().pmem_devices().await
    }
    async fn shares(&self) -> Result<Vec<GuestShare>> {
        self.inner.guest_probe().unwrap().shares().await
    }
    async fn list_share(&self, tag: &str) -> Result<Vec<String>> {
        self.inner.guest_probe().unwrap().list_share(tag).await
    }
    async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>> {
        self.inner
            .guest_probe()
            .unwrap()
            .read_share_file(tag, path)
            .await
    }
    async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()> {
        self.inner
            .guest_probe()
            .unwrap()
            .write_share_file(tag, path, data)
            .await
    }
    async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .guest_probe()
            .unwrap()
            .dial_host(port, payload)
            .await
    }
    async fn serve_echo(&self, port: u32) -> Result<()> {
        self.inner.guest_probe().unwrap().serve_echo(port).await
    }
    async fn uptime(&self) -> Result<Duration> {
        self.inner.guest_probe().unwrap().uptime().await
    }
    async fn trigger(&self, action: GuestAction) -> Result<()> {
        self.inner.guest_probe().unwrap().trigger(action).await
    }
}
