//! Every promise the contract in `uvm-api` makes, each mapped to the checks
//! that fail when a backend breaks it: the lifecycle table, each trait
//! method's doc, each manager's doc, the `Stats` field docs and the
//! truthfulness rule.
//!
//! The table is data ([`promises`]), not a comment: the crate's tests fail
//! if a promise has no check, if it names a check the suite does not have,
//! or if a check of the suite answers to no promise; and the table below is
//! generated from the same data (a test fails when it is out of date; run
//! `UPDATE_PROMISES=1 cargo test -p uvm-conformance --test promises` to
//! rewrite it).
//!
//! The mutation self-test (`conformance/tests/mutants.rs`) breaks one promise
//! at a time in a wrapper of the honest fake and asserts that the suite fails
//! on a check of that promise, and on no check of another.
//!
#![doc = include_str!("../../PROMISES.md")]

mod row;
mod table;

pub use row::{Promise, Unheld};

/// The promises no check can hold a backend to yet ([`Unheld`]).
pub fn unheld() -> &'static [Unheld] {
    table::UNHELD
}

/// Every promise, grouped by area in suite order.
pub fn promises() -> &'static [Promise] {
    table::PROMISES
}

/// The promise called `id`.
pub fn promise(id: &str) -> Option<&'static Promise> {
    table::PROMISES.iter().find(|p| p.id == id)
}

/// The promises a check holds a backend to.
pub fn promises_of_check(check: &str) -> impl Iterator<Item = &'static Promise> + '_ {
    table::PROMISES
        .iter()
        .filter(move |p| p.checks.contains(&check))
}

/// The table as Markdown, as included in these docs (`PROMISES.md`).
pub fn promises_markdown() -> String {
    let mut out = String::from("## The promises\n\n");
    out.push_str(&format!(
        "{} promises, held by {} checks.\n\n",
        table::PROMISES.len(),
        crate::all_checks().len()
    ));
    out.push_str("| promise | source | what the backend must do | checks |\n");
    out.push_str("|---|---|---|---|\n");
    for p in table::PROMISES {
        let checks: Vec<String> = p.checks.iter().map(|c| format!("`{c}`")).collect();
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            p.id,
            p.source,
            p.text.replace('|', "\\|"),
            checks.join(", ")
        ));
    }
    out.push_str(&format!(
        "\n### Promises no check can hold a backend to yet\n\n\
         {} promises that nothing in the contract reads back: defects of the contract, \
         each with what it lacks.\n\n",
        table::UNHELD.len()
    ));
    out.push_str("| promise | source | what the backend must do | the contract lacks |\n");
    out.push_str("|---|---|---|---|\n");
    for u in table::UNHELD {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            u.id,
            u.source,
            u.text.replace('|', "\\|"),
            u.needs.replace('|', "\\|")
        ));
    }
    out
}
