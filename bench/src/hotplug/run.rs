//! The measuring loop: for each kind, N add → seen → remove → gone cycles
//! on one running guest. Progress goes to standard error.

use std::time::{Duration, Instant};

use super::device::Workspace;
use super::kind::Kind;
use super::poll::Poll;
use super::report::{KindReport, RunSample};
use super::target::Target;
use crate::error::{BenchError, Result};

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The kinds, in order.
    pub kinds: Vec<Kind>,
    /// Runs per kind.
    pub runs: usize,
    /// How to poll the guest.
    pub poll: Poll,
    /// How long a removal may take.
    pub removal_timeout: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs every kind of `plan` on `target`; a kind whose run fails stops
/// there (the error is in its report) and the next kind runs.
pub async fn measure(target: &mut dyn Target, plan: &Plan, files: &Workspace) -> Vec<KindReport> {
    let mut reports = Vec::new();
    for &kind in &plan.kinds {
        reports.push(measure_kind(target, kind, plan, files).await);
    }
    reports
}

async fn measure_kind(
    target: &mut dyn Target,
    kind: Kind,
    plan: &Plan,
    files: &Workspace,
) -> KindReport {
    let mut report = KindReport::new(target.vmm(), kind);
    if let Some(why) = target.unsupported(kind) {
        eprintln!(
            "hotplug-bench: {} {kind}: not measured: {why}",
            target.vmm()
        );
        report.errors.push(format!("not measured: {why}"));
        return report;
    }
    for run in 1..=plan.runs {
        match measure_run(target, kind, run, plan, files).await {
            Ok(sample) => {
                eprintln!(
                    "hotplug-bench: {} {kind} run {run}: add call {:.1} ms, seen after {:.1} ms ({} probes of {:.2} ms), removal {}, gone {}{}",
                    target.vmm(),
                    sample.add_call_ms,
                    sample.seen_ms,
                    sample.probes,
                    sample.probe_ms,
                    sample
                        .removal_ms
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms")),
                    sample
                        .gone_ms
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms")),
                    sample
                        .note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                );
                report.runs.push(sample);
            }
            Err(e) => {
                eprintln!(
                    "hotplug-bench: {} {kind} run {run}: FAILED: {e}",
                    target.vmm()
                );
                report.errors.push(format!("run {run}: {e}"));
                break;
            }
        }
    }
    report
}

/// One cycle: add, poll until seen, remove, wait for the release, poll
/// until gone.
async fn measure_run(
    target: &mut dyn Target,
    kind: Kind,
    run: usize,
    plan: &Plan,
    files: &Workspace,
) -> Result<RunSample> {
    let device = files.device(kind, run, target.names())?;
    let mark = device.mark();
    // Also warms the probe's connection up before the clock runs.
    let before = mark
        .seen_by(target.probe()?)
        .await
        .map_err(BenchError::uvm(format!("probe before adding the {mark}")))?;
    if before {
        return Err(BenchError::Vm(format!(
            "the guest shows the {mark} before it was added"
        )));
    }
    target.prepare(&device).await?;
    let called = Instant::now();
    target.add(&device).await?;
    let returned = Instant::now();
    let seen = match plan
        .poll
        .until(target.probe()?, &mark, true, returned)
        .await
    {
        Ok(seen) => seen,
        Err(e) => {
            // Best effort, so that later kinds find a clean guest.
            let _ = target.remove(&device, plan.removal_timeout).await;
            return Err(e);
        }
    };
    let mut sample = RunSample {
        run,
        add_call_ms: ms(returned - called),
        seen_ms: ms(seen.after),
        probes: seen.probes,
        probe_ms: ms(seen.median_probe),
        removal_ms: None,
        gone_ms: None,
        note: (seen.failed_probes > 0).then(|| format!("{} probes failed", seen.failed_probes)),
    };
    let removing = Instant::now();
    match target.remove(&device, plan.removal_timeout).await {
        Ok(released) => {
            sample.removal_ms = Some(ms(released));
            match plan
                .poll
                .until(target.probe()?, &mark, false, removing)
                .await
            {
                Ok(gone) => sample.gone_ms = Some(ms(gone.after)),
                Err(e) => sample.note = Some(format!("not gone: {e}")),
            }
        }
        Err(e) => sample.note = Some(format!("removal: {e}")),
    }
    Ok(sample)
}
