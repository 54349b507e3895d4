//! CPU group membership: accepted where the table allows it, refused
//! elsewhere, and read back through `Stats::cpu_group` (the host's groups
//! themselves are not visible through the contract).

use uvm_api::State;

use super::support::create;
use super::update::{
    Update, bad_arguments, claimed, in_effect, refused_outside, unclaimed_update, works_in,
};
use crate::ctx::Ctx;
use crate::step::{Must, Step, ensure};

fn group() -> Update {
    Update::CpuGroup("uvm-conformance".into())
}

pub(super) async fn while_running(ctx: Ctx) -> Step {
    works_in(&ctx, State::Running, &group()).await.map(drop)
}

pub(super) async fn before_start(ctx: Ctx) -> Step {
    let vm = works_in(&ctx, State::Created, &group()).await?;
    vm.start().await.must("start after setting the CPU group")?;
    in_effect(
        &*vm,
        &group(),
        &format!("{} before start, and start", group().describe()),
    )
    .await
}

/// A new VM is in no CPU group: stats report none (and the check ends
/// unclaimed on a backend without CPU groups).
async fn unset_until_set(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let reported = vm.stats().await.must("stats of a new VM")?.cpu_group;
    ensure!(
        reported.is_none(),
        "a new VM reports CPU group {reported:?}; expected none until one is set"
    );
    if claimed(&*vm, &group())? {
        Ok(())
    } else {
        Err(unclaimed_update(&group()))
    }
}

async fn outside(ctx: Ctx) -> Step {
    refused_outside(&ctx, &group()).await
}

async fn bad_id(ctx: Ctx) -> Step {
    bad_arguments(&ctx, &[Update::CpuGroup(String::new())]).await
}

super::check!(
    CpuGroup,
    cpu_group_set_while_running,
    "the CPU group can be set while running and stats then report it (NotSupported, changing nothing, if unclaimed)",
    while_running
);

super::check!(
    CpuGroup,
    cpu_group_set_before_start,
    "the CPU group can be set before start, stats report it, and it is still in force once the VM runs",
    before_start
);

super::check!(
    CpuGroup,
    cpu_group_unset_until_set,
    "stats of a new VM report no CPU group",
    unset_until_set
);

super::check!(
    CpuGroup,
    cpu_group_set_paused_or_stopped_invalid_state,
    "setting the CPU group while paused or after stop gives InvalidState",
    outside
);

super::check!(
    CpuGroup,
    cpu_group_empty_id_invalid_argument,
    "an empty CPU group id gives InvalidArgument and changes nothing",
    bad_id
);
