//! The lifecycle vocabulary: a VM's [`State`] and the [`Action`]s whose
//! validity depends on it. The table of which action is valid in which
//! state is [`State::check`], in `lifecycle.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created, configured, never started. Devices added now are cold-plugged.
    Created,
    /// The guest is running. Devices added now are hot-plugged.
    Running,
    /// Every virtual processor is parked; guest time does not advance.
    Paused,
    /// The VM has exited, for whatever reason. Terminal.
    Stopped,
}

impl State {
    /// The lower-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }

    /// Whether the VM has exited.
    pub fn is_stopped(self) -> bool {
        self == State::Stopped
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation whose validity depends on the lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// [`crate::Uvm::start`].
    Start,
    /// [`crate::Uvm::stop`] (idempotent once stopped).
    Stop,
    /// [`crate::Uvm::pause`].
    Pause,
    /// [`crate::Uvm::resume`].
    Resume,
    /// [`crate::Uvm::save`].
    Save,
    /// Adding or removing a device, disk, NIC, share or controller.
    ChangeDevices,
    /// Memory, processor or CPU-group updates.
    UpdateResources,
    /// Opening a host-side socket listener.
    Listen,
    /// Connecting from the host to a guest socket.
    Connect,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 9] = [
        Action::Start,
        Action::Stop,
        Action::Pause,
        Action::Resume,
        Action::Save,
        Action::ChangeDevices,
        Action::UpdateResources,
        Action::Listen,
        Action::Connect,
    ];

    /// The lower-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Save => "save",
            Action::ChangeDevices => "change devices",
            Action::UpdateResources => "update resources",
            Action::Listen => "listen",
            Action::Connect => "connect",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
