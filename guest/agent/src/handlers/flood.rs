//! `flood`: checks a [`FloodPlan`] and starts its load generators through
//! [`System`] (the real ones are in [`crate::flood`]).

use super::{HandlerError, HandlerResult, check_name};
use crate::protocol::{Empty, FloodPlan, MAX_FLOOD_SECS};
use crate::system::System;

/// `VMADDR_PORT_ANY`, which cannot be dialled.
const PORT_ANY: u32 = u32::MAX;

/// Checks `plan` and starts it; answers at once.
pub fn flood(system: &dyn System, plan: &FloodPlan) -> HandlerResult<Empty> {
    if plan.seconds == 0 || plan.seconds > MAX_FLOOD_SECS {
        return Err(HandlerError::InvalidArgument(format!(
            "seconds {} is not in 1..={MAX_FLOOD_SECS}",
            plan.seconds
        )));
    }
    for name in plan.disks.iter().chain(&plan.nics) {
        check_name("device", name)?;
    }
    if plan.vsock_port == Some(PORT_ANY) {
        return Err(HandlerError::InvalidArgument(
            "vsock_port is VMADDR_PORT_ANY, not a real port".into(),
        ));
    }
    system
        .flood(plan)
        .map_err(|e| HandlerError::io("starting the flood", e))?;
    Ok(Empty {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::fake::FakeSystem;

    #[test]
    fn a_checked_plan_is_started_and_a_bad_one_changes_nothing() {
        let system = FakeSystem::default();
        let plan = FloodPlan {
            seconds: 5,
            disks: vec!["sda".into()],
            nics: vec!["eth0".into()],
            vsock_port: Some(7000),
            console: true,
        };
        flood(&system, &plan).unwrap();
        assert_eq!(system.floods(), vec![plan.clone()]);
        for bad in [
            FloodPlan {
                seconds: 0,
                ..plan.clone()
            },
            FloodPlan {
                seconds: MAX_FLOOD_SECS + 1,
                ..plan.clone()
            },
            FloodPlan {
                disks: vec!["../sda".into()],
                ..plan.clone()
            },
            FloodPlan {
                vsock_port: Some(u32::MAX),
                ..plan.clone()
            },
        ] {
            assert!(
                matches!(flood(&system, &bad), Err(HandlerError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        assert_eq!(system.floods().len(), 1);
    }
}
