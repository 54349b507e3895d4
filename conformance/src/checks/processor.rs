//! Processor limit updates: accepted where the table allows them, refused
//! elsewhere, and read back through `Stats::processor.limits` (their effect
//! on host scheduling is not visible through the contract).

use uvm_api::{ProcessorLimits, State};

use super::update::{Update, bad_arguments, in_effect, refused_outside, works_in};
use crate::ctx::Ctx;
use crate::step::{Must, Parts, Step, ensure};

fn limits() -> Update {
    Update::Processor(ProcessorLimits {
        limit: Some(5000),
        weight: Some(200),
        reservation: Some(0),
    })
}

pub(super) async fn while_running(ctx: Ctx) -> Step {
    let only_weight = Update::Processor(ProcessorLimits {
        weight: Some(50),
        ..Default::default()
    });
    let mut parts = Parts::default();
    for update in [limits(), only_weight] {
        parts.part(works_in(&ctx, State::Running, &update).await.map(drop))?;
    }
    parts.end()
}

/// An update sets the fields it names and leaves the others as they were.
async fn merged(ctx: Ctx) -> Step {
    let vm = works_in(&ctx, State::Running, &limits()).await?;
    let only_weight = ProcessorLimits {
        weight: Some(50),
        ..Default::default()
    };
    let update = Update::Processor(only_weight);
    let what = update.describe();
    update.apply(&*vm).await.unwrap_or(Ok(())).must(&what)?;
    in_effect(&*vm, &update, &what).await?;
    let now = vm.stats().await.must("stats")?.processor.limits;
    let want = ProcessorLimits {
        weight: Some(50),
        ..match limits() {
            Update::Processor(l) => l,
            _ => ProcessorLimits::default(),
        }
    };
    ensure!(
        now == Some(want),
        "after {what} on top of {}: stats report {now:?}; expected {want:?} (fields not given keep their value)",
        limits().describe()
    );
    Ok(())
}

pub(super) async fn before_start(ctx: Ctx) -> Step {
    let vm = works_in(&ctx, State::Created, &limits()).await?;
    vm.start().await.must("start after a processor update")
}

async fn outside(ctx: Ctx) -> Step {
    refused_outside(&ctx, &limits()).await
}

async fn out_of_range(ctx: Ctx) -> Step {
    let bad = [
        Update::Processor(ProcessorLimits::default()),
        Update::Processor(ProcessorLimits {
            weight: Some(0),
            ..Default::default()
        }),
        Update::Processor(ProcessorLimits {
            limit: Some(10_001),
            ..Default::default()
        }),
        Update::Processor(ProcessorLimits {
            reservation: Some(20_000),
            ..Default::default()
        }),
    ];
    bad_arguments(&ctx, &bad).await
}

super::check!(
    Processor,
    processor_update_while_running,
    "processor limits can be updated while running and stats then report them (NotSupported, changing nothing, if unclaimed)",
    while_running
);

super::check!(
    Processor,
    processor_update_keeps_fields_not_given,
    "an update sets only the limits it names: the others keep their value in stats",
    merged
);

super::check!(
    Processor,
    processor_update_before_start,
    "processor limits can be set before start, stats report them, and the VM then starts",
    before_start
);

super::check!(
    Processor,
    processor_update_paused_or_stopped_invalid_state,
    "a processor update while paused or after stop gives InvalidState",
    outside
);

super::check!(
    Processor,
    processor_limits_out_of_range_invalid_argument,
    "empty or out-of-range limits give InvalidArgument and change nothing",
    out_of_range
);
