//! Results of the hot-add runs: per run ([`RunSample`]), per VMM and kind
//! ([`KindReport`] with its [`Summary`] of medians), as a text table or JSON.

use std::fmt::Write as _;

use super::kind::Kind;
use crate::stats::median;

/// One add/remove cycle. Times are milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSample {
    /// Run number, from 1.
    pub run: usize,
    /// How long the add call itself took (QEMU: `device_add` only).
    pub add_call_ms: f64,
    /// From the add call returning to the end of the first probe that
    /// showed the device.
    pub seen_ms: f64,
    /// Probe round trips until then.
    pub probes: u32,
    /// Median duration of one probe round trip in this run.
    pub probe_ms: f64,
    /// From the remove call to the VMM reporting the guest let go
    /// (backend-kvm: the `Removal` completes; QEMU: `DEVICE_DELETED`).
    pub removal_ms: Option<f64>,
    /// From the remove call to the first probe no longer showing the device.
    pub gone_ms: Option<f64>,
    /// What went wrong in the removal, or anything else worth saying.
    pub note: Option<String>,
}

/// All runs of one kind on one VMM.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KindReport {
    /// The VMM.
    pub vmm: String,
    /// The device kind.
    pub kind: Kind,
    /// The runs that got as far as the guest seeing the device.
    pub runs: Vec<RunSample>,
    /// Why runs failed or the kind was not measured.
    pub errors: Vec<String>,
}

/// Medians (and the spread of `seen_ms`) of a [`KindReport`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Runs measured.
    pub runs: usize,
    /// Median add→seen.
    pub seen_median_ms: Option<f64>,
    /// Fastest add→seen.
    pub seen_min_ms: Option<f64>,
    /// Slowest add→seen.
    pub seen_max_ms: Option<f64>,
    /// Median probe round trip over all runs' medians.
    pub probe_median_ms: Option<f64>,
    /// Median number of probes until seen.
    pub probes_median: Option<f64>,
    /// Median add call.
    pub add_call_median_ms: Option<f64>,
    /// Median removal.
    pub removal_median_ms: Option<f64>,
    /// Median remove→gone.
    pub gone_median_ms: Option<f64>,
}

impl KindReport {
    /// An empty report.
    pub fn new(vmm: &str, kind: Kind) -> Self {
        KindReport {
            vmm: vmm.to_owned(),
            kind,
            runs: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The medians over the runs.
    pub fn summary(&self) -> Summary {
        let values = |f: fn(&RunSample) -> Option<f64>| -> Vec<f64> {
            self.runs.iter().filter_map(f).collect()
        };
        let seen = values(|r| Some(r.seen_ms));
        Summary {
            runs: self.runs.len(),
            seen_median_ms: median(&seen),
            seen_min_ms: seen.iter().copied().reduce(f64::min),
            seen_max_ms: seen.iter().copied().reduce(f64::max),
            probe_median_ms: median(&values(|r| Some(r.probe_ms))),
            probes_median: median(&values(|r| Some(f64::from(r.probes)))),
            add_call_median_ms: median(&values(|r| Some(r.add_call_ms))),
            removal_median_ms: median(&values(|r| r.removal_ms)),
            gone_median_ms: median(&values(|r| r.gone_ms)),
        }
    }

    /// Whether anything failed.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// Every run, one line each.
pub fn runs_table(reports: &[KindReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<6} {:>4} {:>8} {:>8} {:>6} {:>8} {:>10} {:>8}  note",
        "vmm", "kind", "run", "add_ms", "seen_ms", "probes", "probe_ms", "removal_ms", "gone_ms"
    );
    for report in reports {
        for r in &report.runs {
            let _ = writeln!(
                out,
                "{:<12} {:<6} {:>4} {:>8.1} {:>8.1} {:>6} {:>8.2} {:>10} {:>8}  {}",
                report.vmm,
                report.kind.name(),
                r.run,
                r.add_call_ms,
                r.seen_ms,
                r.probes,
                r.probe_ms,
                cell(r.removal_ms),
                cell(r.gone_ms),
                r.note.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// The medians, one line per VMM and kind, then the errors.
pub fn summary_table(reports: &[KindReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<6} {:>4} {:>10} {:>8} {:>8} {:>12} {:>7} {:>9} {:>12} {:>9}",
        "vmm",
        "kind",
        "n",
        "seen_med",
        "min",
        "max",
        "probe_rt_med",
        "probes",
        "add_call",
        "removal_med",
        "gone_med"
    );
    for report in reports {
        let s = report.summary();
        let _ = writeln!(
            out,
            "{:<12} {:<6} {:>4} {:>10} {:>8} {:>8} {:>12} {:>7} {:>9} {:>12} {:>9}",
            report.vmm,
            report.kind.name(),
            s.runs,
            cell(s.seen_median_ms),
            cell(s.seen_min_ms),
            cell(s.seen_max_ms),
            s.probe_median_ms
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
            cell(s.probes_median),
            cell(s.add_call_median_ms),
            cell(s.removal_median_ms),
            cell(s.gone_median_ms),
        );
    }
    let _ = writeln!(
        out,
        "(milliseconds, medians over runs; seen = add call returned -> first probe showing the device; \
         probe_rt = one probe round trip, the resolution of seen)"
    );
    for report in reports {
        for e in &report.errors {
            let _ = writeln!(out, "{} {}: FAILED: {e}", report.vmm, report.kind.name());
        }
    }
    out
}

/// The reports with their summaries, as one JSON document.
pub fn json(reports: &[KindReport]) -> String {
    let items: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "vmm": r.vmm,
                "kind": r.kind,
                "summary": r.summary(),
                "runs": r.runs,
                "errors": r.errors,
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "results": items }))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(run: usize, seen_ms: f64, removal_ms: Option<f64>) -> RunSample {
        RunSample {
            run,
            add_call_ms: 0.5,
            seen_ms,
            probes: 3,
            probe_ms: 1.25,
            removal_ms,
            gone_ms: removal_ms.map(|r| r + 1.0),
            note: None,
        }
    }

    #[test]
    fn summarises_and_renders() {
        let mut kvm = KindReport::new("backend-kvm", Kind::Scsi);
        kvm.runs = vec![
            sample(1, 12.0, Some(30.0)),
            sample(2, 8.0, None),
            sample(3, 10.0, Some(20.0)),
        ];
        let s = kvm.summary();
        assert_eq!(s.runs, 3);
        assert_eq!(s.seen_median_ms, Some(10.0));
        assert_eq!((s.seen_min_ms, s.seen_max_ms), (Some(8.0), Some(12.0)));
        assert_eq!(s.removal_median_ms, Some(25.0));
        assert_eq!(s.probes_median, Some(3.0));
        let mut qemu = KindReport::new("qemu-pc", Kind::Pmem);
        qemu.errors.push("boom".into());
        assert!(qemu.failed() && !kvm.failed());
        assert_eq!(qemu.summary().seen_median_ms, None);
        let reports = [kvm, qemu];
        let table = summary_table(&reports);
        assert!(table.contains("backend-kvm  scsi"), "{table}");
        assert!(table.contains("qemu-pc pmem: FAILED: boom"), "{table}");
        let runs = runs_table(&reports);
        assert_eq!(runs.lines().count(), 4, "{runs}");
        let parsed: serde_json::Value = serde_json::from_str(&json(&reports)).unwrap();
        assert_eq!(parsed["results"][0]["summary"]["seen_median_ms"], 10.0);
        assert_eq!(parsed["results"][1]["kind"], "pmem");
    }
}
