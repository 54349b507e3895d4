//! The report as a table for people (and for CI's `grep`): the capability
//! matrix (`CAPABILITY CLAIM`, one row per entry), the checks (`AREA CHECK
//! RESULT TIME DETAIL`, one row per check), the failures in full, and the
//! summary line.

use std::fmt::Write as _;

use super::model::{Report, one_line};

/// Widest detail shown in a check's row (the failures follow in full).
const DETAIL: usize = 90;

/// Width of the RESULT column: `UNCLAIMED`.
const RESULT_W: usize = 9;

impl Report {
    /// The capability matrix, then a table of every check and its outcome,
    /// then the failure messages in full, then the summary line.
    pub fn to_table(&self) -> String {
        render(self)
    }
}

/// The whole table.
fn render(report: &Report) -> String {
    let mut out = String::new();
    matrix(report, &mut out);
    out.push('\n');
    checks(report, &mut out);
    let failures: Vec<_> = report.failures().collect();
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
        report.backend,
        report.summary.total,
        report.duration_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "{}", report.summary_line());
    out
}

/// `CAPABILITY  CLAIM`, then `scsi add  claimed`, ..., `restore  not claimed`.
fn matrix(report: &Report, out: &mut String) {
    let rows = report.capabilities.rows();
    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        .max("CAPABILITY".len());
    let _ = writeln!(out, "{:<width$}  CLAIM", "CAPABILITY");
    for (label, claim) in rows {
        let _ = writeln!(out, "{label:<width$}  {claim}");
    }
}

/// `AREA  CHECK  RESULT  TIME  DETAIL`, then one row per check.
fn checks(report: &Report, out: &mut String) {
    let width = |f: fn(&super::CheckResult) -> usize, min: usize| {
        report.results.iter().map(f).max().unwrap_or(min).max(min)
    };
    let name_w = width(|r| r.name.len(), "CHECK".len());
    let area_w = width(|r| r.area.as_str().len(), "AREA".len());
    let _ = writeln!(
        out,
        "{:<area_w$}  {:<name_w$}  {:<RESULT_W$}  {:>7}  DETAIL",
        "AREA", "CHECK", "RESULT", "TIME"
    );
    for r in &report.results {
        let detail = r
            .outcome
            .message()
            .map(|m| one_line(m, DETAIL))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<area_w$}  {:<name_w$}  {:<RESULT_W$}  {:>5}ms  {detail}",
            r.area.as_str(),
            r.name,
            r.outcome.status().to_uppercase(),
            r.duration_ms,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::sample;

    #[test]
    fn starts_with_the_matrix_then_lists_every_check() {
        let table = sample().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CAPABILITY"), "{table}");
        assert!(lines[1].starts_with("vpmem add") && lines[1].ends_with("not claimed"));
        let scsi_add = lines.iter().find(|l| l.starts_with("scsi add")).unwrap();
        assert!(scsi_add.ends_with(" claimed") && !scsi_add.ends_with("not claimed"));
        let areas = lines.iter().position(|l| l.starts_with("AREA")).unwrap();
        let restore = lines.iter().position(|l| l.starts_with("restore")).unwrap();
        assert!(restore < areas, "{table}");
        for name in ["a_ok", "b_bad", "c_skip", "d_unclaimed"] {
            assert!(table.contains(name), "{table}");
        }
        assert!(table.contains("FAILED") && table.contains("UNCLAIMED"));
        assert!(
            table
                .trim_end()
                .ends_with("conformance: 1 passed, 1 unclaimed, 1 failed, 1 skipped")
        );
    }

    #[test]
    fn rows_have_the_shape_ci_greps() {
        // .ci/run keeps rows with `[a-z_]+ +[a-z_0-9]+ +(PASSED|...|UNCLAIMED)`
        // and reruns the names in rows whose third column is FAILED.
        let table = sample().to_table();
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(name))
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>())
                .unwrap()
        };
        assert_eq!(row("b_bad"), ["lifecycle", "b_bad", "FAILED"]);
        assert_eq!(
            row("d_unclaimed"),
            ["lifecycle", "d_unclaimed", "UNCLAIMED"]
        );
        let failed: Vec<&str> = table
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("FAILED"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(failed, ["b_bad"]);
    }
}
