//! Resource updates: memory size, processor limits, CPU group.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::config::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use uvm_api::{
    Action, CpuGroupManager, Error, MemoryManager, Operation, ProcessorLimits, ProcessorManager,
    Resource, Result, validate,
};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;

impl Core {
    pub(crate) fn update_memory_mib(&self, size_mib: u64) -> Result<()> {
        self.require(Resource::Memory, Operation::Update)?;
        let mut m = self.lock();
        self.state().check(Action::UpdateResources)?;
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&size_mib) {
            return Err(Error::invalid_argument(
                "size_mib",
                format!("{size_mib} is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB}"),
            ));
        }
        self.faults.take(FaultPoint::UpdateMemory)?;
        debug!(from = m.config.memory_mib, to = size_mib, "memory updated");
        m.config.memory_mib = size_mib;
        Ok(())
    }

    pub(crate) fn update_processor(&self, limits: ProcessorLimits) -> Result<()> {
        self.require(Resource::Processor, Operation::Update)?;
        let mut m = self.lock();
        self.state().check(Action::UpdateResources)?;
        limits.validate()?;
        self.faults.take(FaultPoint::UpdateProcessor)?;
        m.resources.apply(limits);
        debug!(limits = ?m.resources.limits, "processor limits updated");
        Ok(())
    }

    pub(crate) fn set_group(&self, group_id: &str) -> Result<()> {
        self.require(Resource::CpuGroup, Operation::Update)?;
        let mut m = self.lock();
        self.state().check(Action::UpdateResources)?;
        validate::identifier("group_id", group_id)?;
        self.faults.take(FaultPoint::SetCpuGroup)?;
        debug!(group_id, "CPU group set");
        m.resources.cpu_group = Some(group_id.to_owned());
        Ok(())
    }

    /// Processor limits in force.
    pub(crate) fn processor_limits(&self) -> ProcessorLimits {
        self.lock().resources.limits
    }

    /// The CPU group the VM is in.
    pub(crate) fn cpu_group_id(&self) -> Option<String> {
        self.lock().resources.cpu_group.clone()
    }
}

#[async_trait]
impl MemoryManager for Core {
    async fn update_memory(&self, size_mib: u64) -> Result<()> {
        self.traced("memory update", async { self.update_memory_mib(size_mib) })
            .await
    }
}

#[async_trait]
impl ProcessorManager for Core {
    async fn update_limits(&self, limits: ProcessorLimits) -> Result<()> {
        self.traced("processor update", async { self.update_processor(limits) })
            .await
    }
}

#[async_trait]
impl CpuGroupManager for Core {
    async fn set_cpu_group(&self, group_id: &str) -> Result<()> {
        self.traced("cpu_group set", async { self.set_group(group_id) })
            .await
    }
}
