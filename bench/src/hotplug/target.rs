//! What a VMM under test offers the measuring loop ([`crate::hotplug::run`]).

use std::time::Duration;

use async_trait::async_trait;
use uvm_api::GuestProbe;

use super::device::{Device, Names};
use super::kind::Kind;
use crate::error::Result;

/// A running guest whose VMM can hot-add and remove devices.
#[async_trait(?Send)]
pub trait Target {
    /// The VMM's name in reports.
    fn vmm(&self) -> &'static str;

    /// How this VMM's devices are named.
    fn names(&self) -> Names;

    /// The guest's view.
    fn probe(&self) -> Result<&dyn GuestProbe>;

    /// Why `kind` cannot be measured on this VM, if it cannot.
    fn unsupported(&self, kind: Kind) -> Option<String>;

    /// Prepares what `device` needs on the host side before the add call
    /// (outside the time measured); nothing by default.
    async fn prepare(&mut self, device: &Device) -> Result<()> {
        let _ = device;
        Ok(())
    }

    /// Adds `device`; returns when the VMM's add call has returned.
    async fn add(&mut self, device: &Device) -> Result<()>;

    /// Removes `device` and waits (at most `timeout`) until the VMM reports
    /// that the guest let go of it; returns the time from the remove call
    /// to that report. Host-side leftovers are released afterwards, outside
    /// the time measured.
    async fn remove(&mut self, device: &Device, timeout: Duration) -> Result<Duration>;
}
