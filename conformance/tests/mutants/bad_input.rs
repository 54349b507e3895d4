//! Mutants of the bad_input area.

use crate::Mutant;

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    Vec::new()
}
