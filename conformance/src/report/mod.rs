//! What a run found: the backend's capability matrix, then one
//! [`CheckResult`] per check ([`model`]), as a table ([`table`]), JSON or
//! JUnit XML ([`junit`]).

mod junit;
mod model;
mod table;

pub use junit::JunitError;
pub use model::{CheckResult, Report, Summary};
