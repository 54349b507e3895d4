//! A named check: what it is about and the function that runs it.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::ctx::Ctx;
use crate::outcome::{Area, Outcome};

/// The function of a check: takes its context, returns what it found.
pub type CheckFn = fn(Ctx) -> BoxFuture<'static, Outcome>;

/// One named conformance check.
#[derive(Clone, Copy)]
pub struct Check {
    /// Unique name, a Rust identifier (the macro makes it a test name), prefixed by its area.
    pub name: &'static str,
    /// The part of the contract it is about.
    pub area: Area,
    /// One sentence: what the backend must do to pass.
    pub description: &'static str,
    /// Runs the check.
    pub run: CheckFn,
    /// Whether the check measures the whole process (threads, file descriptors) and so must
    /// run alone: the runner gives it an exclusive lock no other check runs under.
    pub exclusive: bool,
    /// A longer time limit than the run's default, for checks that do a lot of work.
    pub timeout: Option<Duration>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("area", &self.area)
            .field("exclusive", &self.exclusive)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
