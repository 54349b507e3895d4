//! The resource updates (memory, processor limits, CPU group) share their
//! state rules: valid before start and while running, refused otherwise.

use uvm_api::{Operation, ProcessorLimits, Resource, State, Uvm};

use super::support::{Before, in_state, refused};
use crate::capability::Capability;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::step::{Must, Parts, Step, Want, expect_err, unclaimed};

/// One update call.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    /// `update_memory(size_mib)`.
    Memory(u64),
    /// `update_limits(limits)`.
    Processor(ProcessorLimits),
    /// `set_cpu_group(id)`.
    CpuGroup(String),
}

impl Update {
    /// The resource it updates.
    pub(crate) fn resource(&self) -> Resource {
        match self {
            Update::Memory(_) => Resource::Memory,
            Update::Processor(_) => Resource::Processor,
            Update::CpuGroup(_) => Resource::CpuGroup,
        }
    }

    /// Makes the call; `None` if the VM has no manager for it.
    pub(crate) async fn apply(&self, vm: &dyn Uvm) -> Option<uvm_api::Result<()>> {
        match self {
            Update::Memory(mib) => Some(vm.memory()?.update_memory(*mib).await),
            Update::Processor(limits) => Some(vm.processor()?.update_limits(*limits).await),
            Update::CpuGroup(id) => Some(vm.cpu_group()?.set_cpu_group(id).await),
        }
    }

    /// The call in words.
    pub(crate) fn describe(&self) -> String {
        match self {
            Update::Memory(mib) => format!("update_memory({mib} MiB)"),
            Update::Processor(l) => format!("update_limits({l:?})"),
            Update::CpuGroup(id) => format!("set_cpu_group({id:?})"),
        }
    }
}

/// Whether the VM claims the update; fails if it claims it without the manager.
pub(crate) fn claimed(vm: &dyn Uvm, update: &Update) -> Step<bool> {
    let r = update.resource();
    let has = match update {
        Update::Memory(_) => vm.memory().is_some(),
        Update::Processor(_) => vm.processor().is_some(),
        Update::CpuGroup(_) => vm.cpu_group().is_some(),
    };
    let claims = vm.supported(r, Operation::Update);
    if claims && !has {
        return Err(crate::step::fail(format!(
            "supported({r}, update) is true but the VM provides no {r} manager"
        )));
    }
    Ok(claims)
}

/// What the resource updates set, as `stats` reports it: a refused update
/// must leave these as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    assigned_bytes: u64,
    limits: Option<ProcessorLimits>,
    cpu_group: Option<String>,
}

impl Settings {
    async fn take(vm: &dyn Uvm, when: &str) -> Step<Settings> {
        let stats = vm.stats().await.must(&format!("stats {when}"))?;
        Ok(Settings {
            assigned_bytes: stats.memory.assigned_bytes,
            limits: stats.processor.limits,
            cpu_group: stats.cpu_group,
        })
    }

    /// Fails if `stats` now reports other settings.
    async fn unchanged(&self, vm: &dyn Uvm, after: &str) -> Step {
        let now = Settings::take(vm, &format!("after {after}")).await?;
        if now != *self {
            return Err(crate::step::fail(format!(
                "after {after}: stats report other settings (before: {self:?}; after: {now:?})"
            )));
        }
        Ok(())
    }
}

/// The end of a check whose update the VM does not claim, once the refusal
/// has been verified.
pub(crate) fn unclaimed_update(update: &Update) -> Outcome {
    unclaimed(&[Capability::Pair(update.resource(), Operation::Update)])
}

/// On `vm`: `update` gives `want` if the VM claims it (and changes nothing),
/// or is refused with `NotSupported`, changing nothing, and ends unclaimed.
async fn refused_as(vm: &dyn Uvm, update: &Update, want: Want, what: &str) -> Step {
    let before = Before::take(vm).await?;
    let settings = Settings::take(vm, &format!("before {what}")).await?;
    let result = update.apply(vm).await;
    if !claimed(vm, update)? {
        refused(
            vm,
            &before,
            what,
            update.resource(),
            Operation::Update,
            result,
        )
        .await?;
        settings.unchanged(vm, what).await?;
        return Err(unclaimed_update(update));
    }
    expect_err(what, result.unwrap_or(Ok(())), want)?;
    before.unchanged(vm, what).await?;
    settings.unchanged(vm, what).await
}

/// In `state` (created or running): the update works if claimed; else it is
/// refused, and the check ends unclaimed.
pub(crate) async fn works_in(ctx: &Ctx, state: State, update: &Update) -> Step<super::support::Vm> {
    let vm = in_state(ctx, state).await?;
    let what = format!("{} while {state}", update.describe());
    let before = Before::take(&*vm).await?;
    let settings = Settings::take(&*vm, &format!("before {what}")).await?;
    let result = update.apply(&*vm).await;
    if !claimed(&*vm, update)? {
        refused(
            &*vm,
            &before,
            &what,
            update.resource(),
            Operation::Update,
            result,
        )
        .await?;
        settings.unchanged(&*vm, &what).await?;
        return Err(unclaimed_update(update));
    }
    result.unwrap_or(Ok(())).must(&what)?;
    super::support::expect_state(&*vm, state, &what)?;
    in_effect(&*vm, update, &what).await?;
    Ok(vm)
}

/// After `update` succeeded: `stats` reports what it set. Processor limits
/// are merged (a field the update left unset keeps its value, checked by
/// the processor checks); memory is checked by the memory checks, which wait
/// for a balloon to get there.
pub(crate) async fn in_effect(vm: &dyn Uvm, update: &Update, what: &str) -> Step {
    let stats = vm.stats().await.must(&format!("stats after {what}"))?;
    match update {
        Update::Memory(_) => Ok(()),
        Update::Processor(set) => {
            let Some(now) = stats.processor.limits else {
                return Err(crate::step::fail(format!(
                    "after {what}: stats report no processor limits (Stats::processor.limits is None)"
                )));
            };
            let fields = [
                ("limit", set.limit, now.limit),
                ("weight", set.weight, now.weight),
                ("reservation", set.reservation, now.reservation),
            ];
            for (name, want, got) in fields {
                if want.is_some() && want != got {
                    return Err(crate::step::fail(format!(
                        "after {what}: stats report {name} {got:?}; expected {want:?}"
                    )));
                }
            }
            Ok(())
        }
        Update::CpuGroup(id) => {
            if stats.cpu_group.as_deref() == Some(id.as_str()) {
                Ok(())
            } else {
                Err(crate::step::fail(format!(
                    "after {what}: stats report CPU group {:?}; expected {id:?}",
                    stats.cpu_group
                )))
            }
        }
    }
}

/// While paused and after stop, the update gives `InvalidState` (or
/// `NotSupported` if unclaimed: the check then ends unclaimed).
pub(crate) async fn refused_outside(ctx: &Ctx, update: &Update) -> Step {
    let mut parts = Parts::default();
    for state in [State::Paused, State::Stopped] {
        let vm = match in_state(ctx, state).await {
            Ok(vm) => vm,
            Err(Outcome::Skipped(_)) => continue,
            Err(o) => return Err(o),
        };
        let what = format!("{} while {state}", update.describe());
        parts.part(refused_as(&*vm, update, Want::InvalidState(state), &what).await)?;
    }
    parts.end()
}

/// Each of `bad` gives `InvalidArgument` (or `NotSupported` if unclaimed: the
/// check then ends unclaimed), before start and while running.
pub(crate) async fn bad_arguments(ctx: &Ctx, bad: &[Update]) -> Step {
    let mut parts = Parts::default();
    for state in [State::Created, State::Running] {
        let vm = in_state(ctx, state).await?;
        for update in bad {
            let what = format!("{} while {state}", update.describe());
            parts.part(refused_as(&*vm, update, Want::InvalidArgument, &what).await)?;
        }
    }
    parts.end()
}
