//! Names to values: the contract's enums parsed from text (a command
//! line, an environment variable), with the contract's typed errors.

use std::str::FromStr;

use crate::error::Error;
use crate::guest_os::GuestOs;
use crate::resource::Resource;

impl FromStr for GuestOs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "linux" => Ok(GuestOs::Linux),
            "windows" => Ok(GuestOs::Windows),
            _ => Err(Error::UnknownGuestOs { name: s.to_owned() }),
        }
    }
}

impl FromStr for Resource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::invalid_argument("resource", format!("unknown resource {s:?}")))
    }
}
