//! The lifecycle state machine shared by every backend.
//!
//! [`State::check`] is the single place where the table in the crate docs
//! is written as code; backends call it before doing any work so that every
//! backend refuses the same transitions with the same error.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

    /// Checks `action` against the lifecycle table.
    ///
    /// Returns what the state becomes if the action succeeds, or
    /// [`Error::InvalidState`] if the action is not allowed now.
    pub fn check(self, action: Action) -> Result<State> {
        use Action::*;
        use State::*;
        let next = match (action, self) {
            (Start, Created) => Some(Running),
            (Pause, Running) => Some(Paused),
            (Resume, Paused) => Some(Running),
            (Stop, Created | Running | Paused | Stopped) => Some(Stopped),
            (Save, Paused) => Some(Paused),
            (ChangeDevices, Created | Running) => Some(self),
            (UpdateResources, Created | Running) => Some(self),
            (Listen, Created | Running | Paused) => Some(self),
            (Connect, Running) => Some(self),
            _ => None,
        };
        next.ok_or(Error::InvalidState {
            operation: action.as_str().to_owned(),
            state: self,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [State; 4] = [
        State::Created,
        State::Running,
        State::Paused,
        State::Stopped,
    ];

    #[test]
    fn table_matches_the_documented_one() {
        // (action, [created, running, paused, stopped]) -> Some(next) or None
        use State::*;
        let table: [(Action, [Option<State>; 4]); 9] = [
            (Action::Start, [Some(Running), None, None, None]),
            (
                Action::Stop,
                [Some(Stopped), Some(Stopped), Some(Stopped), Some(Stopped)],
            ),
            (Action::Pause, [None, Some(Paused), None, None]),
            (Action::Resume, [None, None, Some(Running), None]),
            (Action::Save, [None, None, Some(Paused), None]),
            (
                Action::ChangeDevices,
                [Some(Created), Some(Running), None, None],
            ),
            (
                Action::UpdateResources,
                [Some(Created), Some(Running), None, None],
            ),
            (
                Action::Listen,
                [Some(Created), Some(Running), Some(Paused), None],
            ),
            (Action::Connect, [None, Some(Running), None, None]),
        ];
        for (action, row) in table {
            for (state, expected) in STATES.into_iter().zip(row) {
                match (state.check(action), expected) {
                    (Ok(next), Some(want)) => assert_eq!(next, want, "{action} in {state}"),
                    (
                        Err(Error::InvalidState {
                            operation,
                            state: s,
                        }),
                        None,
                    ) => {
                        assert_eq!(operation, action.as_str());
                        assert_eq!(s, state);
                    }
                    (got, want) => panic!("{action} in {state}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn stopped_is_terminal() {
        for action in Action::ALL {
            if let Ok(next) = State::Stopped.check(action) {
                assert_eq!(next, State::Stopped);
            }
        }
    }
}
