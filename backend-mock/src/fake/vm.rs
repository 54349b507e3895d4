//! [`FakeUvm`]: the handle on a fake VM, implementing [`Uvm`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;
use uvm_api::{
    Action, CpuGroupManager, ExitStatus, GuestProbe, MemoryManager, NetworkManager, Operation,
    PciManager, ProcessorLimits, ProcessorManager, Resource, Result, ScsiManager,
    SharedFolderManager, State, Stats, StopMode, Uvm, VmSocketManager, VpmemManager,
};

use super::core::Core;
use super::fault_point::FaultPoint;
use super::faults::Faults;
use super::guest::view::{GuestView, guest_view};
use super::profile::Profile;
use super::stats;

/// A fake VM. Cheap to clone: clones are handles on the same VM.
///
/// Created by [`crate::FakeBackend::create_fake`] (or through
/// [`uvm_api::Backend::create`] as a `Box<dyn Uvm>`). When the last handle
/// is dropped the VM goes away, completing its pending removals.
#[derive(Clone)]
pub struct FakeUvm {
    core: Arc<Core>,
}

impl fmt::Debug for FakeUvm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeUvm")
            .field("id", &self.core.id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl FakeUvm {
    pub(crate) fn from_core(core: Arc<Core>) -> FakeUvm {
        FakeUvm { core }
    }

    /// Fault injection for this VM.
    pub fn faults(&self) -> &Faults {
        &self.core.faults
    }

    /// What the simulated guest sees now (see [`GuestView`] for each state).
    pub fn guest_view(&self) -> GuestView {
        let m = self.core.lock();
        guest_view(&m, self.core.state())
    }

    /// The capabilities this VM has.
    pub fn profile(&self) -> &Profile {
        self.core.profile()
    }

    /// Processor limits applied so far with `ProcessorManager::update_limits`.
    pub fn processor_limits(&self) -> ProcessorLimits {
        self.core.processor_limits()
    }

    /// The host CPU group set with `CpuGroupManager::set_cpu_group`, if any.
    /// (Named apart from [`Uvm::cpu_group`], the manager accessor.)
    pub fn cpu_group_id(&self) -> Option<String> {
        self.core.cpu_group_id()
    }

    /// Guest memory in MiB, with updates applied.
    pub fn memory_mib(&self) -> u64 {
        self.core.lock().config.memory_mib
    }

    /// Whether a manager serving any of `resources` is present.
    fn has(&self, resources: &[Resource]) -> bool {
        self.core.profile().allows_any(resources)
    }
}

#[async_trait]
impl Uvm for FakeUvm {
    fn id(&self) -> &str {
        &self.core.id
    }

    fn state(&self) -> State {
        self.core.state()
    }

    async fn start(&self) -> Result<()> {
        self.core.traced("start", self.core.start()).await
    }

    async fn stop(&self, mode: StopMode) -> Result<()> {
        self.core.traced("stop", self.core.stop(mode)).await
    }

    async fn pause(&self) -> Result<()> {
        self.core.traced("pause", async { self.core.pause() }).await
    }

    async fn resume(&self) -> Result<()> {
        self.core
            .traced("resume", async { self.core.resume() })
            .await
    }

    async fn save(&self, dest: &Path) -> Result<()> {
        self.core.traced("save", self.core.save(dest)).await
    }

    async fn wait(&self) -> ExitStatus {
        self.core.wait().await
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.core.exit_status()
    }

    async fn stats(&self) -> Result<Stats> {
        self.core
            .traced("stats", async {
                let m = self.core.lock();
                self.core.faults.take(FaultPoint::Stats)?;
                let has_limits = self
                    .core
                    .profile()
                    .allows(Resource::Processor, Operation::Update);
                Ok(stats::stats(
                    &m,
                    self.core.state(),
                    Instant::now(),
                    has_limits,
                ))
            })
            .await
    }

    fn supported(&self, resource: Resource, operation: Operation) -> bool {
        resource.defined_operations().contains(&operation)
            && self.core.profile().allows(resource, operation)
    }

    fn supports_action(&self, action: Action) -> bool {
        self.core.profile().allows_action(action)
    }

    fn scsi(&self) -> Option<&dyn ScsiManager> {
        self.has(&[Resource::Scsi])
            .then_some(&*self.core as &dyn ScsiManager)
    }

    fn vpmem(&self) -> Option<&dyn VpmemManager> {
        self.has(&[Resource::VPMem])
            .then_some(&*self.core as &dyn VpmemManager)
    }

    fn network(&self) -> Option<&dyn NetworkManager> {
        self.has(&[Resource::Network])
            .then_some(&*self.core as &dyn NetworkManager)
    }

    fn pci(&self) -> Option<&dyn PciManager> {
        self.has(&[Resource::Pci])
            .then_some(&*self.core as &dyn PciManager)
    }

    fn vm_socket(&self) -> Option<&dyn VmSocketManager> {
        self.has(&[Resource::VmSocket])
            .then_some(&*self.core as &dyn VmSocketManager)
    }

    fn shared_folders(&self) -> Option<&dyn SharedFolderManager> {
        self.has(&[Resource::VirtioFs, Resource::Plan9, Resource::Vsmb])
            .then_some(&*self.core as &dyn SharedFolderManager)
    }

    fn memory(&self) -> Option<&dyn MemoryManager> {
        self.has(&[Resource::Memory])
            .then_some(&*self.core as &dyn MemoryManager)
    }

    fn processor(&self) -> Option<&dyn ProcessorManager> {
        self.has(&[Resource::Processor])
            .then_some(&*self.core as &dyn ProcessorManager)
    }

    fn cpu_group(&self) -> Option<&dyn CpuGroupManager> {
        self.has(&[Resource::CpuGroup])
            .then_some(&*self.core as &dyn CpuGroupManager)
    }

    fn guest_probe(&self) -> Option<&dyn GuestProbe> {
        Some(&*self.core as &dyn GuestProbe)
    }
}
