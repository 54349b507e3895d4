//! The two kinds of row of the promise table.

use crate::outcome::Area;

/// One promise of the contract and the checks that hold a backend to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promise {
    /// Unique id, `area.snake_case`.
    pub id: &'static str,
    /// The area of the suite whose checks hold the backend to it.
    pub area: Area,
    /// Where the contract makes it (a type or method of `uvm-api`).
    pub source: &'static str,
    /// The promise, in one sentence.
    pub text: &'static str,
    /// The checks that fail when a backend breaks it.
    pub checks: &'static [&'static str],
}

/// A promise the contract makes that nothing in the contract can read back
/// yet, so no check can hold a backend to it: a defect of the contract,
/// listed with the read-back it lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unheld {
    /// Unique id, `area.snake_case`.
    pub id: &'static str,
    /// The area it belongs to.
    pub area: Area,
    /// Where the contract makes it.
    pub source: &'static str,
    /// The promise, in one sentence.
    pub text: &'static str,
    /// What the contract lacks for a check to observe it.
    pub needs: &'static str,
}
