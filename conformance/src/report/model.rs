//! The report's data: one [`CheckResult`] per check, the [`Summary`]
//! counts and the [`Report`] itself (JSON is its serde form).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capability::CapabilityMatrix;
use crate::check::Check;
use crate::outcome::{Area, Outcome};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Its area.
    pub area: Area,
    /// What it checks.
    pub description: String,
    /// What it found.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

impl CheckResult {
    /// The result of `check`.
    pub fn new(check: &Check, outcome: Outcome, elapsed: Duration) -> CheckResult {
        CheckResult {
            name: check.name.to_owned(),
            area: check.area,
            description: check.description.to_owned(),
            outcome,
            duration_ms: millis(elapsed),
        }
    }
}

/// Counts of a run: `passed + unclaimed + failed + skipped == total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Checks run.
    pub total: usize,
    /// Checks passed: they proved a claimed capability (or a promise every backend makes).
    pub passed: usize,
    /// Checks unclaimed: their capability is not claimed, and all they
    /// verified is its honest refusal.
    pub unclaimed: usize,
    /// Checks failed.
    pub failed: usize,
    /// Checks skipped.
    pub skipped: usize,
}

impl Summary {
    /// The counts of `results`.
    pub fn of(results: &[CheckResult]) -> Summary {
        let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
        Summary {
            total: results.len(),
            passed: count(Outcome::is_passed),
            unclaimed: count(Outcome::is_unclaimed),
            failed: count(Outcome::is_failed),
            skipped: count(Outcome::is_skipped),
        }
    }
}

/// The report of a run against one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The backend's registry name.
    pub backend: String,
    /// What the backend claims ([`uvm_api::Backend::capabilities`]): the
    /// key to every `unclaimed` result below.
    pub capabilities: CapabilityMatrix,
    /// The counts.
    pub summary: Summary,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
    /// One result per check, in suite order.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// A report of `results` against a backend with `capabilities`, counted.
    pub fn new(
        backend: String,
        capabilities: CapabilityMatrix,
        results: Vec<CheckResult>,
        elapsed: Duration,
    ) -> Report {
        Report {
            backend,
            capabilities,
            summary: Summary::of(&results),
            duration_ms: millis(elapsed),
            results,
        }
    }

    /// Whether no check failed (unclaimed and skipped checks are not failures).
    pub fn success(&self) -> bool {
        self.summary.failed == 0
    }

    /// The results that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| r.outcome.is_failed())
    }

    /// The result of check `name`.
    pub fn result(&self, name: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The one-line summary: `conformance: N passed, N unclaimed, N failed, N skipped`.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "conformance: {} passed, {} unclaimed, {} failed, {} skipped",
            s.passed, s.unclaimed, s.failed, s.skipped
        )
    }

    /// The report as pretty JSON: the backend, its capability matrix, the
    /// summary, then every result.
    ///
    /// # Errors
    /// Serialization failed (it cannot for this type; the error is passed on all the same).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// `text` on one line, cut to `max` characters.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use uvm_api::{Action, Capabilities, Operation, Resource};

    use super::*;

    /// A report with one result of each outcome, against a backend that
    /// claims SCSI add and pause only.
    pub(crate) fn sample() -> Report {
        let r = |name: &str, outcome| CheckResult {
            name: name.into(),
            area: Area::Lifecycle,
            description: "d".into(),
            outcome,
            duration_ms: 3,
        };
        let caps = Capabilities {
            resources: [(Resource::Scsi, Operation::Add)].into_iter().collect(),
            actions: [Action::Pause].into_iter().collect(),
            restore: false,
        };
        Report::new(
            "mock".into(),
            CapabilityMatrix::of(&caps),
            vec![
                r("a_ok", Outcome::Passed),
                r(
                    "b_bad",
                    Outcome::Failed("expected <1> & got \"2\"\u{1}".into()),
                ),
                r("c_skip", Outcome::Skipped("no probe".into())),
                r(
                    "d_unclaimed",
                    Outcome::Unclaimed("(pci, add) is not claimed".into()),
                ),
            ],
            Duration::from_millis(1500),
        )
    }

    #[test]
    fn summary_counts_each_outcome_and_adds_up() {
        let report = sample();
        let s = report.summary;
        assert_eq!(
            s,
            Summary {
                total: 4,
                passed: 1,
                unclaimed: 1,
                failed: 1,
                skipped: 1
            }
        );
        assert_eq!(s.passed + s.unclaimed + s.failed + s.skipped, s.total);
        assert!(!report.success());
        assert_eq!(
            report.summary_line(),
            "conformance: 1 passed, 1 unclaimed, 1 failed, 1 skipped"
        );
    }

    #[test]
    fn unclaimed_and_skipped_are_not_failures() {
        let mut report = sample();
        report.results.retain(|r| !r.outcome.is_failed());
        let report = Report::new(
            report.backend,
            report.capabilities,
            report.results,
            Duration::ZERO,
        );
        assert!(report.success());
        assert_eq!(report.summary.unclaimed, 1);
    }

    #[test]
    fn json_starts_with_the_matrix_and_round_trips() {
        let report = sample();
        let json = report.to_json().unwrap();
        let keys: Vec<usize> = [
            "\"backend\"",
            "\"capabilities\"",
            "\"summary\"",
            "\"results\"",
        ]
        .iter()
        .map(|k| json.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.contains("\"unclaimed\": 1"), "{json}");
        assert!(json.contains("\"failed\": 1"), "{json}");
        assert!(json.contains("\"claim\": \"not_claimed\""), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
