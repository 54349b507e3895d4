//! The lifecycle table as code, shared by every backend.
//!
//! [`State::check`] is the single place where the table in the crate docs
//! is written as code; backends call it before doing any work so that every
//! backend refuses the same transitions with the same error.

use crate::error::{Error, Result};
use crate::state::{Action, State};

impl State {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Action, State};

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
