//! What a run found: one [`CheckResult`] per check, as a table, JSON or JUnit XML.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Counts of a run.
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

/// The report of a run against one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The backend's registry name.
    pub backend: String,
    /// The counts.
    pub summary: Summary,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
    /// One result per check, in suite order.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// A report of `results`, counted.
    pub fn new(backend: String, results: Vec<CheckResult>, elapsed: Duration) -> Report {
        let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
        let summary = Summary {
            total: results.len(),
            passed: count(Outcome::is_passed),
            unclaimed: count(Outcome::is_unclaimed),
            failed: count(Outcome::is_failed),
            skipped: count(Outcome::is_skipped),
        };
        Report {
            backend,
            summary,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            results,
        }
    }

    /// Whether no check failed.
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
        format!(
            "conformance: {} passed, {} unclaimed, {} failed, {} skipped",
            self.summary.passed, self.summary.unclaimed, self.summary.failed, self.summary.skipped
        )
    }

    /// The report as pretty JSON.
    ///
    /// # Errors
    /// Serialization failed (it cannot for this type; the error is passed on all the same).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// A table of every check and its outcome, then the failure messages in
    /// full, then the summary line.
    pub fn to_table(&self) -> String {
        const DETAIL: usize = 90;
        let name_w = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let area_w = self
            .results
            .iter()
            .map(|r| r.area.as_str().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<area_w$}  {:<name_w$}  {:<9}  {:>7}  DETAIL",
            "AREA", "CHECK", "RESULT", "TIME"
        );
        for r in &self.results {
            let detail = r
                .outcome
                .message()
                .map(|m| one_line(m, DETAIL))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<area_w$}  {:<name_w$}  {:<9}  {:>5}ms  {detail}",
                r.area.as_str(),
                r.name,
                r.outcome.status().to_uppercase(),
                r.duration_ms,
            );
        }
        let failures: Vec<_> = self.failures().collect();
        if !failures.is_empty() {
            let _ = writeln!(out, "\nfailures:");
            for r in failures {
                let _ = writeln!(
                    out,
                    "  {}: {}",
                    r.name,
                    r.outcome.message().unwrap_or_default()
                );
            }
        }
        let _ = writeln!(
            out,
            "\nbackend {}: {} checks in {:.1} s",
            self.backend,
            self.summary.total,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(out, "{}", self.summary_line());
        out
    }

    /// The report as JUnit XML: one test suite for the backend, one test case per check.
    pub fn to_junit(&self) -> String {
        let secs = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"uvm-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
            self.summary.total,
            self.summary.failed,
            self.summary.skipped,
            secs(self.duration_ms)
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">",
            xml_escape(&self.backend),
            self.summary.total,
            self.summary.failed,
            self.summary.skipped,
            secs(self.duration_ms)
        );
        for r in &self.results {
            let _ = write!(
                out,
                "    <testcase classname=\"uvm_conformance.{}\" name=\"{}\" time=\"{}\"",
                r.area.as_str(),
                xml_escape(&r.name),
                secs(r.duration_ms)
            );
            match &r.outcome {
                Outcome::Passed | Outcome::Unclaimed(_) => out.push_str("/>\n"),
                Outcome::Failed(m) => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml_escape(&one_line(m, 200)),
                        xml_escape(m)
                    );
                }
                Outcome::Skipped(m) => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml_escape(m)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
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

/// Escapes text for XML attributes and content, dropping characters XML 1.0 cannot hold.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let r = |name: &str, outcome| CheckResult {
            name: name.into(),
            area: Area::Lifecycle,
            description: "d".into(),
            outcome,
            duration_ms: 3,
        };
        Report::new(
            "mock".into(),
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
    fn summary_counts_each_outcome() {
        let report = sample();
        assert_eq!(
            report.summary,
            Summary {
                total: 4,
                passed: 1,
                unclaimed: 1,
                failed: 1,
                skipped: 1
            }
        );
        assert!(!report.success());
        assert_eq!(
            report.summary_line(),
            "conformance: 1 passed, 1 unclaimed, 1 failed, 1 skipped"
        );
    }

    #[test]
    fn junit_is_escaped_and_complete() {
        let xml = sample().to_junit();
        assert!(xml.contains("&lt;1&gt; &amp; got &quot;2&quot;"), "{xml}");
        assert!(!xml.contains('\u{1}'));
        assert!(xml.contains("<skipped message=\"no probe\"/>"));
        assert_eq!(xml.matches("<testcase ").count(), 4);
        assert_eq!(xml.matches("</testcase>").count(), 2);
        assert!(xml.contains("failures=\"1\""));
    }

    #[test]
    fn table_lists_every_check_and_failures_in_full() {
        let table = sample().to_table();
        for name in ["a_ok", "b_bad", "c_skip", "d_unclaimed"] {
            assert!(table.contains(name), "{table}");
        }
        assert!(table.contains("FAILED"));
        assert!(table.contains("UNCLAIMED"));
        assert!(
            table
                .trim_end()
                .ends_with("conformance: 1 passed, 1 unclaimed, 1 failed, 1 skipped")
        );
    }

    #[test]
    fn json_round_trips() {
        let report = sample();
        let json = report.to_json().unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
