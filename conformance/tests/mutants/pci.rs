//! Mutants of the pci area.

use crate::Mutant;

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    Vec::new()
}
