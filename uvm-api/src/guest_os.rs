//! [`GuestOs`]: the guest operating systems the contract knows.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The guest operating system a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestOs {
    /// Linux, booted directly from a kernel image.
    #[default]
    Linux,
    /// Windows, booted from its disk.
    Windows,
}

impl fmt::Display for GuestOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestOs::Linux => "linux",
            GuestOs::Windows => "windows",
        })
    }
}
