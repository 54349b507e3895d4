//! Runs checks: each in its own task, with a time limit, so a backend that
//! panics or hangs fails that check instead of stopping the run.

use std::any::Any;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::RwLock;
use tracing::{info, warn};
use uvm_api::UvmConfig;

use crate::capability::CapabilityMatrix;
use crate::check::Check;
use crate::checks;
use crate::ctx::{Ctx, Settings};
use crate::factory::Factory;
use crate::outcome::{Area, Outcome};
use crate::report::{CheckResult, Report};
use crate::threads;

/// Default time limit of one check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Held shared by every check run in this process, and exclusively by the
/// checks that measure the whole process ([`Check::exclusive`]), so that those
/// run alone even when several suites or tests run at once.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Time limit of one check (a check may ask for more, see [`Check::timeout`]).
    pub timeout: Duration,
    /// Time limits the checks use while waiting for the backend.
    pub settings: Settings,
    /// Only checks of these areas (all if empty).
    pub areas: Vec<Area>,
    /// Only checks with these names (all if empty).
    pub names: Vec<String>,
    /// How many non-exclusive checks run at once (at least 1). Exclusive checks
    /// always run alone, after the others.
    pub parallelism: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: DEFAULT_TIMEOUT,
            settings: Settings::default(),
            areas: Vec::new(),
            names: Vec::new(),
            parallelism: 1,
        }
    }
}

impl RunOptions {
    /// Whether `check` is selected by the area and name filters.
    pub fn selects(&self, check: &Check) -> bool {
        (self.areas.is_empty() || self.areas.contains(&check.area))
            && (self.names.is_empty() || self.names.iter().any(|n| n == check.name))
    }
}

/// Runs one check against a backend from `factory`, starting from `template`.
pub async fn run_check(
    check: &Check,
    factory: &Factory,
    template: &UvmConfig,
    options: &RunOptions,
) -> CheckResult {
    let started = Instant::now();
    info!(
        check = check.name,
        area = check.area.as_str(),
        "check started"
    );
    let outcome = if check.exclusive {
        let _alone = EXCLUSIVE.write().await;
        run_guarded(check, factory, template, options).await
    } else {
        let _shared = EXCLUSIVE.read().await;
        run_guarded(check, factory, template, options).await
    };
    let elapsed = started.elapsed();
    match &outcome {
        Outcome::Failed(m) => warn!(check = check.name, "failed: {m}"),
        Outcome::Skipped(m) => info!(check = check.name, "skipped: {m}"),
        Outcome::Unclaimed(m) => info!(check = check.name, ?elapsed, "unclaimed: {m}"),
        Outcome::Passed => info!(check = check.name, ?elapsed, "passed"),
    }
    CheckResult::new(check, outcome, elapsed)
}

async fn run_guarded(
    check: &Check,
    factory: &Factory,
    template: &UvmConfig,
    options: &RunOptions,
) -> Outcome {
    let limit = check
        .timeout
        .unwrap_or(options.timeout)
        .max(options.timeout);
    let name = check.name;
    let run = check.run;
    let factory = factory.clone();
    let template = template.clone();
    let settings = options.settings;
    // The factory runs inside the task too: a factory that panics fails the check.
    let mut task = tokio::spawn(async move {
        let ctx = match Ctx::new(name, factory, template, settings) {
            Ok(ctx) => ctx,
            Err(e) => return Outcome::Failed(format!("could not create a scratch directory: {e}")),
        };
        if let Err(e) = ctx.backend().check_available() {
            return Outcome::Skipped(format!(
                "backend {} is not available on this host: {e}",
                ctx.backend().name()
            ));
        }
        run(ctx).await
    });
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) if e.is_panic() => {
            Outcome::Failed(format!("panicked: {}", panic_message(e.into_panic())))
        }
        Ok(Err(e)) => Outcome::Failed(format!("the check's task was cancelled: {e}")),
        Err(_) => {
            warn!(
                check = name,
                ?limit,
                "overran its time limit; the threads of this process:\n{}",
                threads::thread_report()
            );
            task.abort();
            Outcome::Failed(format!(
                "did not finish within {limit:?} (a backend call never returned)"
            ))
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a non-string panic payload".to_owned(),
        },
    }
}

/// Runs every selected check of the suite and returns the report.
///
/// Non-exclusive checks run first, up to `options.parallelism` at once;
/// exclusive ones (the leak checks) run after them, one at a time.
pub async fn run_suite(factory: &Factory, template: &UvmConfig, options: &RunOptions) -> Report {
    run_checks(&checks::all_checks(), factory, template, options).await
}

/// Runs the selected checks among `list`, in the order of `list` in the report.
pub async fn run_checks(
    list: &[Check],
    factory: &Factory,
    template: &UvmConfig,
    options: &RunOptions,
) -> Report {
    let started = Instant::now();
    let made = factory.make();
    let backend = made.name().to_owned();
    let capabilities = CapabilityMatrix::of(&made.capabilities());
    drop(made);
    let selected: Vec<(usize, &Check)> = list
        .iter()
        .enumerate()
        .filter(|(_, c)| options.selects(c))
        .collect();
    info!(
        backend,
        checks = selected.len(),
        "running conformance checks"
    );
    let (alone, shared): (Vec<_>, Vec<_>) = selected.into_iter().partition(|(_, c)| c.exclusive);
    let mut results: Vec<(usize, CheckResult)> =
        futures::stream::iter(shared.into_iter().map(|(i, check)| async move {
            (i, run_check(check, factory, template, options).await)
        }))
        .buffer_unordered(options.parallelism.max(1))
        .collect()
        .await;
    for (i, check) in alone {
        results.push((i, run_check(check, factory, template, options).await));
    }
    results.sort_by_key(|(i, _)| *i);
    Report::new(
        backend,
        capabilities,
        results.into_iter().map(|(_, r)| r).collect(),
        started.elapsed(),
    )
}

/// Runs the check called `name`; `None` if the suite has no such check.
pub async fn run_named(
    name: &str,
    factory: &Factory,
    template: &UvmConfig,
    options: &RunOptions,
) -> Option<CheckResult> {
    let check = checks::find(name)?;
    Some(run_check(&check, factory, template, options).await)
}
