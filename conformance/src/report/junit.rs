//! The report as JUnit XML, written by nextest's `quick-junit` (which also
//! escapes and drops what XML cannot hold).
//!
//! One `<testsuite>` named after the backend. Its `<properties>` come first
//! and carry the capability matrix (`capability: scsi add` = `claimed`, ...)
//! and the counts JUnit has no attribute for (`passed`, `unclaimed`). Then
//! one `<testcase>` per check, `classname` `uvm_conformance.<area>`:
//!
//! - passed: a plain test case;
//! - failed: a `<failure>` with the first line as message and the whole
//!   message as text;
//! - skipped: `<skipped>` with the reason;
//! - unclaimed: a *passing* test case with a property `outcome` =
//!   `unclaimed` and the message as its `<system-out>`. JUnit knows only
//!   success, failure, error and skipped. An unclaimed check is not a failure
//!   (the CLI exits 0) and it did run and verify the honest refusal, so it is
//!   neither a failure nor a skip; as a success it keeps CI green, the
//!   property lets tools tell it from a pass, and `<system-out>` shows people
//!   which capability was not claimed in the viewers that print it.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::model::{CheckResult, Report, one_line};
use crate::outcome::Outcome;

/// The name of the `<testsuites>` element.
const REPORT_NAME: &str = "uvm-conformance";

/// The property that marks an unclaimed test case, and its value.
const OUTCOME_PROPERTY: (&str, &str) = ("outcome", "unclaimed");

/// A report that could not be written as JUnit XML.
#[derive(Debug, thiserror::Error)]
#[error("writing the report as JUnit XML: {0}")]
pub struct JunitError(#[from] quick_junit::SerializeError);

/// The whole document.
impl Report {
    /// The report as JUnit XML: one test suite for the backend whose
    /// properties are the capability matrix and the counts, one test case
    /// per check.
    ///
    /// # Errors
    /// The XML writer failed.
    pub fn to_junit(&self) -> Result<String, JunitError> {
        render(self)
    }
}

fn render(report: &Report) -> Result<String, JunitError> {
    let mut suite = TestSuite::new(report.backend.as_str());
    suite.set_time(Duration::from_millis(report.duration_ms));
    for (label, claim) in report.capabilities.rows() {
        suite.add_property(Property::new(
            format!("capability: {label}"),
            claim.as_str(),
        ));
    }
    suite.add_property(Property::new("passed", report.summary.passed.to_string()));
    suite.add_property(Property::new(
        "unclaimed",
        report.summary.unclaimed.to_string(),
    ));
    suite.add_test_cases(report.results.iter().map(test_case));
    let mut junit = quick_junit::Report::new(REPORT_NAME);
    junit.set_time(Duration::from_millis(report.duration_ms));
    junit.add_test_suite(suite);
    Ok(junit.to_string()?)
}

/// The test case of one check.
fn test_case(r: &CheckResult) -> TestCase {
    let status = match &r.outcome {
        Outcome::Passed | Outcome::Unclaimed(_) => TestCaseStatus::success(),
        Outcome::Failed(m) => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(one_line(m, 200))
                .set_description(m.as_str());
            status
        }
        Outcome::Skipped(m) => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(m.as_str());
            status
        }
    };
    let mut case = TestCase::new(r.name.as_str(), status);
    case.set_classname(format!("uvm_conformance.{}", r.area.as_str()))
        .set_time(Duration::from_millis(r.duration_ms));
    if let Outcome::Unclaimed(m) = &r.outcome {
        case.add_property(Property::new(OUTCOME_PROPERTY.0, OUTCOME_PROPERTY.1))
            .set_system_out(m.as_str());
    }
    case
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::sample;

    #[test]
    fn starts_with_the_matrix_and_escapes_what_it_must() {
        let xml = sample().to_junit().unwrap();
        assert!(xml.starts_with("<?xml"), "{xml}");
        let first_property = xml.find("<property ").unwrap();
        let first_case = xml.find("<testcase ").unwrap();
        assert!(first_property < first_case, "{xml}");
        assert!(
            xml.contains(r#"<property name="capability: scsi add" value="claimed"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="capability: restore" value="not claimed"/>"#),
            "{xml}"
        );
        assert!(xml.contains("&lt;1&gt; &amp; got &quot;2&quot;"), "{xml}");
        assert!(!xml.contains('\u{1}'));
        assert_eq!(xml.matches("<testcase ").count(), 4);
    }

    #[test]
    fn counts_and_unclaimed_cases_are_marked() {
        let xml = sample().to_junit().unwrap();
        assert!(xml.contains(r#"tests="4""#), "{xml}");
        assert!(xml.contains(r#"failures="1""#), "{xml}");
        assert!(xml.contains(r#"skipped="1""#), "{xml}");
        assert!(
            xml.contains(r#"<property name="unclaimed" value="1"/>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"<skipped message="no probe"/>"#), "{xml}");
        let case = &xml[xml.find(r#"name="d_unclaimed""#).unwrap()..];
        let case = &case[..case.find("</testcase>").unwrap()];
        assert!(
            case.contains(r#"<property name="outcome" value="unclaimed"/>"#),
            "{case}"
        );
        assert!(case.contains("(pci, add) is not claimed"), "{case}");
        assert!(
            !case.contains("<failure") && !case.contains("<skipped"),
            "{case}"
        );
    }
}
