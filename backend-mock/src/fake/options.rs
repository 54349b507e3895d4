//! [`FakeOptions`]: how a fake backend and its VMs behave.

use std::time::Duration;

use super::profile::Profile;

/// How a [`crate::FakeBackend`] and its VMs behave.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Which capabilities the VMs have.
    pub profile: Profile,
    /// How long the simulated guest takes to release a hot-removed device (default 2 ms).
    pub eject_delay: Duration,
    /// How long `start` takes to boot the simulated guest (default 0).
    pub boot_delay: Duration,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            profile: Profile::all(),
            eject_delay: Duration::from_millis(2),
            boot_delay: Duration::ZERO,
        }
    }
}
