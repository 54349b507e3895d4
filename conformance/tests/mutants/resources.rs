//! Mutants of the resource updates: memory, processor limits, CPU group.

use async_trait::async_trait;
use std::sync::Mutex;

use uvm_api::{ProcessorLimits, Result, Stats, Uvm};

use crate::Mutant;
use crate::lie::{Lie, processor};

/// `update_limits` replaces every field, so a field the update leaves unset
/// is cleared instead of kept (the VM keeps and reports the last update).
#[derive(Default)]
struct LimitsReplaced {
    last: Mutex<Option<ProcessorLimits>>,
}
#[async_trait]
impl Lie for LimitsReplaced {
    async fn update_limits(&self, vm: &dyn Uvm, limits: ProcessorLimits) -> Result<()> {
        processor(vm).update_limits(limits).await?;
        *self.last.lock().unwrap() = Some(limits);
        Ok(())
    }
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if let Some(last) = *self.last.lock().unwrap() {
            stats.processor.limits = Some(last);
        }
        Ok(stats)
    }
}

/// `set_cpu_group` says yes and keeps the VM where it was.
struct CpuGroupIgnored;
#[async_trait]
impl Lie for CpuGroupIgnored {
    async fn set_cpu_group(&self, vm: &dyn Uvm, group_id: &str) -> Result<()> {
        let _ = (vm, group_id);
        Ok(())
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "cpu group set is ignored",
            promise: "cpu_group.set_works",
            lie: || Box::new(CpuGroupIgnored),
            caught_by: &["cpu_group_set_while_running", "cpu_group_set_before_start"],
            collateral: &[],
        },
        Mutant {
            name: "processor limits replaced, not merged",
            promise: "processor.update_merges",
            lie: || Box::<LimitsReplaced>::default(),
            caught_by: &["processor_update_keeps_fields_not_given"],
            collateral: &[],
        },
    ]
}
