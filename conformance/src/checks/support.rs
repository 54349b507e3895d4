//! Helpers every check uses: VMs in a given state, capability claims, and
//! the "refused and changed nothing" assertion.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use uvm_api::{Action, GuestProbe, Operation, Resource, State, StopMode, Uvm, UvmConfig};

use super::guest::{GuestSnapshot, snapshot};
use crate::ctx::Ctx;
use crate::step::{Must, Parts, Step, Want, bail, ensure, expect_err, fail, skip};

/// A VM a check created. Clones share it; when the last one is dropped, a VM
/// that is still running is force-stopped in the background.
#[derive(Clone)]
pub(crate) struct Vm(Arc<dyn Uvm>);

impl Vm {
    /// Takes ownership of a VM the backend created.
    pub(crate) fn new(vm: Box<dyn Uvm>) -> Vm {
        Vm(Arc::from(vm))
    }

    /// The shared handle, for tasks.
    pub(crate) fn arc(&self) -> Arc<dyn Uvm> {
        Arc::clone(&self.0)
    }
}

impl Deref for Vm {
    type Target = dyn Uvm;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1
            && !self.0.state().is_stopped()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let vm = Arc::clone(&self.0);
            handle.spawn(async move {
                let _ = vm.stop(StopMode::Force).await;
            });
        }
    }
}

/// A graceful stop with a timeout long enough for any guest that complies.
pub(crate) const GRACEFUL: StopMode = StopMode::Graceful {
    timeout: Duration::from_secs(10),
};

/// Creates a VM from `config`.
pub(crate) async fn create_with(ctx: &Ctx, config: UvmConfig) -> Step<Vm> {
    let vm = ctx
        .backend()
        .create(config)
        .await
        .must("create a VM from the config template")?;
    Ok(Vm(Arc::from(vm)))
}

/// Creates a VM from the template.
pub(crate) async fn create(ctx: &Ctx) -> Step<Vm> {
    create_with(ctx, ctx.config()).await
}

/// Skips unless the VM can pause (and resume, to leave the paused state).
pub(crate) fn need_pause(vm: &dyn Uvm) -> Step {
    if !vm.supports_action(Action::Pause) {
        return Err(skip(
            "the backend cannot pause, so the paused state cannot be reached",
        ));
    }
    Ok(())
}

/// Moves a `Created` VM to `state` (`Paused` skips the check if the backend cannot pause).
pub(crate) async fn reach(vm: &dyn Uvm, state: State) -> Step {
    match state {
        State::Created => {}
        State::Running => vm.start().await.must("start")?,
        State::Paused => {
            need_pause(vm)?;
            vm.start().await.must("start")?;
            vm.pause().await.must("pause")?;
        }
        State::Stopped => {
            vm.start().await.must("start")?;
            vm.stop(StopMode::Force).await.must("force stop")?;
        }
    }
    expect_state(vm, state, &format!("moving a new VM to {state}"))
}

/// Creates a VM and moves it to `state`.
pub(crate) async fn in_state(ctx: &Ctx, state: State) -> Step<Vm> {
    let vm = create(ctx).await?;
    reach(&*vm, state).await?;
    Ok(vm)
}

/// Fails unless the VM is in `state`.
pub(crate) fn expect_state(vm: &dyn Uvm, state: State, after: &str) -> Step {
    let now = vm.state();
    ensure!(
        now == state,
        "after {after}: expected state {state}, the VM is {now}"
    );
    Ok(())
}

/// The VM's guest probe; skips the check if it has none.
pub(crate) fn probe(vm: &dyn Uvm) -> Step<&dyn GuestProbe> {
    vm.guest_probe().ok_or_else(|| {
        skip("the backend provides no guest probe, so the guest's view cannot be checked")
    })
}

/// Whether the VM claims `(resource, operation)`, and its manager.
pub(crate) enum Claim<'a, M: ?Sized> {
    /// `supported` is true and the manager is there.
    Yes(&'a M),
    /// `supported` is false; the manager may or may not be there.
    No(Option<&'a M>),
}

/// Reads the VM's claim for `(resource, operation)`; fails if it claims the
/// pair without providing the manager.
pub(crate) fn claim<'a, M: ?Sized>(
    vm: &dyn Uvm,
    resource: Resource,
    operation: Operation,
    manager: Option<&'a M>,
) -> Step<Claim<'a, M>> {
    match (vm.supported(resource, operation), manager) {
        (true, Some(m)) => Ok(Claim::Yes(m)),
        (true, None) => Err(fail(format!(
            "supported({resource}, {operation}) is true but the VM provides no {resource} manager"
        ))),
        (false, m) => Ok(Claim::No(m)),
    }
}

/// What a refused call must leave as it was: the state and the guest's view.
pub(crate) struct Before {
    state: State,
    guest: Option<GuestSnapshot>,
}

impl Before {
    /// Records the VM's state and, if it runs and has a probe, the guest's view.
    pub(crate) async fn take(vm: &dyn Uvm) -> Step<Before> {
        let state = vm.state();
        let guest = match (state, vm.guest_probe()) {
            (State::Running, Some(p)) => Some(snapshot(p).await?),
            _ => None,
        };
        Ok(Before { state, guest })
    }

    /// Fails if the state or the guest's view changed since [`Before::take`].
    pub(crate) async fn unchanged(&self, vm: &dyn Uvm, after: &str) -> Step {
        expect_state(vm, self.state, after)?;
        if let (Some(before), Some(p)) = (&self.guest, vm.guest_probe()) {
            let now = snapshot(p).await?;
            ensure!(
                &now == before,
                "after {after}: the guest's view changed (before: {before}; after: {now})"
            );
        }
        Ok(())
    }
}

/// Expects a refused call: `NotSupported` for the pair (or no manager to call
/// at all, `None`), with nothing changed.
pub(crate) async fn refused<T>(
    vm: &dyn Uvm,
    before: &Before,
    what: &str,
    resource: Resource,
    operation: Operation,
    result: Option<uvm_api::Result<T>>,
) -> Step {
    if let Some(result) = result {
        let what = format!(
            "{what} (supported({resource}, {operation}) is false, VM {})",
            before.state
        );
        expect_err(&what, result, Want::NotSupported(resource, operation))?;
        before.unchanged(vm, &what).await?;
    }
    Ok(())
}

/// Runs a part of a check before start and then while running (`part` gets
/// the state), and gathers the two ends into one ([`Parts`]).
pub(crate) async fn created_and_running<F, Fut>(mut part: F) -> Step
where
    F: FnMut(State) -> Fut,
    Fut: std::future::Future<Output = Step>,
{
    let mut parts = Parts::default();
    for state in [State::Created, State::Running] {
        parts.part(part(state).await)?;
    }
    parts.end()
}

/// Waits until `removal` completes, failing with what happened if it does not in time.
pub(crate) async fn complete(ctx: &Ctx, removal: &uvm_api::Removal, what: &str) -> Step {
    let limit = ctx.settings().removal_timeout;
    if let Err(e) = removal.wait(limit).await {
        bail!(
            "{what}: expected the removal of {} {} to complete within {limit:?}, got {}",
            removal.resource(),
            removal.id(),
            crate::step::describe(&e)
        );
    }
    Ok(())
}

/// Polls `f` every 10 ms until it reports done, for at most `limit`; returns
/// whether it did and the last value it saw.
pub(crate) async fn eventually<L, F, Fut>(limit: Duration, mut f: F) -> Step<(bool, L)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Step<(bool, L)>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (done, last) = f().await?;
        if done || tokio::time::Instant::now() >= deadline {
            return Ok((done, last));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
