//! Host/guest sockets: the host's listeners and the ports the guest echoes on.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use uvm_api::VsockStream;

/// A host listener's end inside the VM: where the guest's connections go.
#[derive(Debug)]
pub(crate) struct HostPort {
    /// Tells this listener from a later one on the same port.
    pub serial: u64,
    /// The listener's queue of accepted connections.
    pub tx: mpsc::Sender<VsockStream>,
}

/// Listeners on both sides.
#[derive(Debug, Default)]
pub(crate) struct VsockState {
    /// Host listeners by port.
    pub host: BTreeMap<u32, HostPort>,
    /// Ports the guest echoes on.
    pub guest_echo: BTreeSet<u32>,
}

impl VsockState {
    /// The VM stopped: every listener closes (pending `accept`s fail).
    pub fn close_all(&mut self) {
        self.host.clear();
        self.guest_echo.clear();
    }
}
