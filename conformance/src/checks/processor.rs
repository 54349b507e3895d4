//! Processor limit updates: accepted where the table allows them, refused
//! elsewhere, and read back through `Stats::processor.limits` (their effect
//! on host scheduling is not visible through the contract).

use uvm_api::{ProcessorLimits, State};

use super::support::create;
use super::update::{
    Update, bad_arguments, claimed, in_effect, refused_outside, unclaimed_update, works_in,
};
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
    vm.start().await.must("start after a processor update")?;
    in_effect(
        &*vm,
        &limits(),
        &format!("{} before start, and start", limits().describe()),
    )
    .await
}

/// The bounds the contract states are inside the range: limit and weight
/// 1 and 10000, reservation 0 and 10000.
async fn at_bounds(ctx: Ctx) -> Step {
    let mut parts = Parts::default();
    let highest = ProcessorLimits {
        limit: Some(10_000),
        weight: Some(10_000),
        reservation: Some(10_000),
    };
    let lowest = ProcessorLimits {
        limit: Some(1),
        weight: Some(1),
        reservation: Some(0),
    };
    for limits in [highest, lowest] {
        let update = Update::Processor(limits);
        parts.part(works_in(&ctx, State::Created, &update).await.map(drop))?;
    }
    parts.end()
}

/// Before any update, a VM with a processor manager reports every limit
/// unset; one without reports no limits at all (and the check ends
/// unclaimed: that is all a backend without limits can show).
async fn unset_until_set(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let reported = vm.stats().await.must("stats of a new VM")?.processor.limits;
    if claimed(&*vm, &limits())? {
        ensure!(
            reported == Some(ProcessorLimits::default()),
            "a new VM with a processor manager reports limits {reported:?}; expected every field unset"
        );
        return Ok(());
    }
    ensure!(
        reported.is_none(),
        "a VM without processor updates reports limits {reported:?}; expected None"
    );
    Err(unclaimed_update(&limits()))
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
        // One good field and one bad: refused as a whole, the good one not applied.
        Update::Processor(ProcessorLimits {
            limit: Some(5000),
            weight: Some(0),
            reservation: None,
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
    processor_limits_at_their_bounds_accepted,
    "limits at the bounds the contract states (1 and 10000; reservation 0 and 10000) are accepted and reported",
    at_bounds
);

super::check!(
    Processor,
    processor_limits_unset_until_set,
    "stats of a new VM report every limit unset, or no limits at all without a processor manager",
    unset_until_set
);

super::check!(
    Processor,
    processor_update_before_start,
    "processor limits can be set before start, stats report them, and they are still in force once the VM runs",
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
