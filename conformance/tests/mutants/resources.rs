//! Mutants of the resource updates: memory, processor limits, CPU group.

use std::sync::Mutex;

use async_trait::async_trait;
use uvm_api::config::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use uvm_api::{Error, ProcessorLimits, Result, State, Stats, Uvm};

use crate::Mutant;
use crate::lie::{Lie, cpu_group, memory, processor};

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
        if matches!(vm.state(), State::Created | State::Running) && !group_id.is_empty() {
            return Ok(());
        }
        cpu_group(vm).set_cpu_group(group_id).await
    }
}

/// `update_limits` says yes to good limits and applies nothing.
struct LimitsAcceptedNotApplied;
#[async_trait]
impl Lie for LimitsAcceptedNotApplied {
    async fn update_limits(&self, vm: &dyn Uvm, limits: ProcessorLimits) -> Result<()> {
        if matches!(vm.state(), State::Created | State::Running) && limits.validate().is_ok() {
            return Ok(());
        }
        processor(vm).update_limits(limits).await
    }
}

/// Reads the upper bound 10000 as outside the range.
struct LimitsUpperBoundExclusive;
#[async_trait]
impl Lie for LimitsUpperBoundExclusive {
    async fn update_limits(&self, vm: &dyn Uvm, limits: ProcessorLimits) -> Result<()> {
        let at_bound = [limits.limit, limits.weight, limits.reservation].contains(&Some(10_000));
        if at_bound {
            return Err(Error::invalid_argument("limits", "10000 is out of range"));
        }
        processor(vm).update_limits(limits).await
    }
}

/// Applies the fields of an update one by one and stops at the first bad
/// one: the good fields before it stay applied although the call failed.
struct RefusedLimitsPartlyApplied;
#[async_trait]
impl Lie for RefusedLimitsPartlyApplied {
    async fn update_limits(&self, vm: &dyn Uvm, limits: ProcessorLimits) -> Result<()> {
        let fields = [
            ProcessorLimits {
                limit: limits.limit,
                ..Default::default()
            },
            ProcessorLimits {
                weight: limits.weight,
                ..Default::default()
            },
            ProcessorLimits {
                reservation: limits.reservation,
                ..Default::default()
            },
        ];
        let mut applied_any = false;
        for field in fields {
            if field == ProcessorLimits::default() {
                continue;
            }
            processor(vm).update_limits(field).await?;
            applied_any = true;
        }
        if applied_any {
            Ok(())
        } else {
            processor(vm).update_limits(limits).await
        }
    }
}

/// Reports a weight of 100 on a VM whose limits were never set.
struct DefaultWeightReported;
#[async_trait]
impl Lie for DefaultWeightReported {
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if let Some(limits) = &mut stats.processor.limits
            && limits.weight.is_none()
        {
            limits.weight = Some(100);
        }
        Ok(stats)
    }
}

/// Remembers a group set before start and reports it while the VM is
/// created, but never applies it: once the VM runs, it is in no group.
#[derive(Default)]
struct CpuGroupSetBeforeStartLost {
    pending: Mutex<Option<String>>,
}
#[async_trait]
impl Lie for CpuGroupSetBeforeStartLost {
    async fn set_cpu_group(&self, vm: &dyn Uvm, group_id: &str) -> Result<()> {
        if vm.state() == State::Created && !group_id.is_empty() {
            *self.pending.lock().unwrap() = Some(group_id.to_owned());
            return Ok(());
        }
        cpu_group(vm).set_cpu_group(group_id).await
    }
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if vm.state() == State::Created && stats.cpu_group.is_none() {
            stats.cpu_group = self.pending.lock().unwrap().clone();
        }
        Ok(stats)
    }
}

/// Reports every VM in a "default" group before any group is set.
struct CpuGroupDefaultReported;
#[async_trait]
impl Lie for CpuGroupDefaultReported {
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if stats.cpu_group.is_none() {
            stats.cpu_group = Some("default".into());
        }
        Ok(stats)
    }
}

/// Sets the balloon back to the configured size at every resume.
#[derive(Default)]
struct MemoryRevertedOnResume {
    configured: Mutex<Option<u64>>,
}
#[async_trait]
impl Lie for MemoryRevertedOnResume {
    async fn update_memory(&self, vm: &dyn Uvm, size_mib: u64) -> Result<()> {
        let before = vm.stats().await?.memory.assigned_bytes >> 20;
        memory(vm).update_memory(size_mib).await?;
        self.configured.lock().unwrap().get_or_insert(before);
        Ok(())
    }
    async fn resume(&self, vm: &dyn Uvm) -> Result<()> {
        vm.resume().await?;
        let configured = *self.configured.lock().unwrap();
        if let Some(mib) = configured {
            let _ = memory(vm).update_memory(mib).await;
        }
        Ok(())
    }
}

/// Rounds every size up to a 128 MiB block and says yes.
struct MemoryRoundedToBlocks;
#[async_trait]
impl Lie for MemoryRoundedToBlocks {
    async fn update_memory(&self, vm: &dyn Uvm, size_mib: u64) -> Result<()> {
        memory(vm).update_memory(size_mib.div_ceil(128) * 128).await
    }
}

/// Applies a size out of range, clamped, and then reports the refusal.
struct RefusedMemoryStillResizes;
#[async_trait]
impl Lie for RefusedMemoryStillResizes {
    async fn update_memory(&self, vm: &dyn Uvm, size_mib: u64) -> Result<()> {
        let result = memory(vm).update_memory(size_mib).await;
        if let Err(Error::InvalidArgument { .. }) = &result {
            let _ = memory(vm)
                .update_memory(size_mib.clamp(MIN_MEMORY_MIB, MAX_MEMORY_MIB))
                .await;
        }
        result
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
            collateral: &["concurrency_resource_updates_stay_in_their_vm"],
        },
        Mutant {
            name: "processor limits replaced, not merged",
            promise: "processor.update_merges",
            lie: || Box::<LimitsReplaced>::default(),
            caught_by: &["processor_update_keeps_fields_not_given"],
            collateral: &[],
        },
        Mutant {
            name: "processor limits accepted and not applied",
            promise: "processor.update_works",
            lie: || Box::new(LimitsAcceptedNotApplied),
            caught_by: &["processor_update_while_running"],
            collateral: &[
                "processor_update_keeps_fields_not_given",
                "processor_limits_at_their_bounds_accepted",
                "processor_update_before_start",
                "concurrency_resource_updates_stay_in_their_vm",
            ],
        },
        Mutant {
            name: "processor limit 10000 refused as out of range",
            promise: "processor.bounds_inclusive",
            lie: || Box::new(LimitsUpperBoundExclusive),
            caught_by: &["processor_limits_at_their_bounds_accepted"],
            collateral: &[],
        },
        Mutant {
            name: "refused processor limits partly applied",
            promise: "processor.limits_validated",
            lie: || Box::new(RefusedLimitsPartlyApplied),
            caught_by: &["processor_limits_out_of_range_invalid_argument"],
            collateral: &[],
        },
        Mutant {
            name: "a weight reported that was never set",
            promise: "processor.limits_none_without_manager",
            lie: || Box::new(DefaultWeightReported),
            caught_by: &["processor_limits_unset_until_set"],
            collateral: &[],
        },
        Mutant {
            name: "cpu group set before start lost at start",
            promise: "cpu_group.set_before_start_holds",
            lie: || Box::<CpuGroupSetBeforeStartLost>::default(),
            caught_by: &["cpu_group_set_before_start"],
            collateral: &[],
        },
        Mutant {
            name: "a default cpu group reported before any is set",
            promise: "cpu_group.none_until_set",
            lie: || Box::new(CpuGroupDefaultReported),
            caught_by: &["cpu_group_unset_until_set"],
            collateral: &[],
        },
        Mutant {
            name: "memory update undone at resume",
            promise: "memory.update_lasts",
            lie: || Box::<MemoryRevertedOnResume>::default(),
            caught_by: &["memory_update_survives_pause_resume"],
            collateral: &[],
        },
        Mutant {
            name: "memory rounded up to 128 MiB blocks",
            promise: "memory.exact_size",
            lie: || Box::new(MemoryRoundedToBlocks),
            caught_by: &["memory_update_to_odd_size_exact_or_refused"],
            collateral: &[],
        },
        Mutant {
            name: "out-of-range memory refused but applied clamped",
            promise: "memory.out_of_range_invalid_argument",
            lie: || Box::new(RefusedMemoryStillResizes),
            caught_by: &["memory_update_out_of_range_invalid_argument"],
            collateral: &[],
        },
    ]
}
