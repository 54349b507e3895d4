//! [`ConfigProblem`]: one field of a configuration that failed validation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// The field, as named in [`crate::UvmConfig`] (for example `devices.nics[1].mac`).
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigProblem {
    /// Joins problems into one line for an error message.
    pub fn join(problems: &[ConfigProblem]) -> String {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
