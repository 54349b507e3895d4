//! What a backend claims: one [`Capability`], and the [`CapabilityMatrix`]
//! of every capability the contract defines, with which of them the backend
//! claims. A report starts with the matrix, so that every `unclaimed` outcome
//! below it can be read against it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uvm_api::{Action, Capabilities, Operation, Resource};

/// The lifecycle actions a backend may lack ([`uvm_api::Uvm::supports_action`]).
pub(crate) const OPTIONAL_ACTIONS: [Action; 3] = [Action::Pause, Action::Resume, Action::Save];

/// The lifecycle actions every backend must do.
const REQUIRED_ACTIONS: [Action; 2] = [Action::Start, Action::Stop];

/// One capability a backend may claim or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// An operation on a resource: `supported(resource, operation)` and
    /// [`Capabilities::resources`].
    Pair(Resource, Operation),
    /// An optional lifecycle action: `supports_action(action)` and
    /// [`Capabilities::actions`].
    Action(Action),
    /// [`uvm_api::Backend::restore`]: [`Capabilities::restore`].
    Restore,
}

impl Capability {
    /// How the backend refuses this capability when it does not claim it.
    pub fn refusal(self) -> &'static str {
        match self {
            Capability::Pair(..) => "NotSupported, nothing changed",
            Capability::Action(_) => "ActionNotSupported, nothing changed",
            Capability::Restore => "an error, no VM",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Pair(r, op) => write!(f, "({r}, {op})"),
            Capability::Action(a) => write!(f, "action {a}"),
            Capability::Restore => f.write_str("restore"),
        }
    }
}

/// Whether a backend claims an entry of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// The backend's capabilities list it.
    Claimed,
    /// They do not: the checks about it can only end `unclaimed`.
    NotClaimed,
    /// Not something a backend may lack: start and stop work on every backend.
    Required,
    /// Not a capability of its own: device changes, resource updates, listen
    /// and connect are claimed per resource, by the (resource, operation) pairs.
    PerResource,
}

impl Claim {
    fn of(claimed: bool) -> Claim {
        if claimed {
            Claim::Claimed
        } else {
            Claim::NotClaimed
        }
    }

    /// `claimed`, `not claimed`, `required` or `per resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Claimed => "claimed",
            Claim::NotClaimed => "not claimed",
            Claim::Required => "required",
            Claim::PerResource => "per resource",
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One (resource, operation) pair of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairClaim {
    /// The resource.
    pub resource: Resource,
    /// The operation on it.
    pub operation: Operation,
    /// Whether the backend claims it.
    pub claim: Claim,
}

/// One lifecycle action of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionClaim {
    /// The action.
    pub action: Action,
    /// Whether the backend claims it (or must do it, or claims it per resource).
    pub claim: Claim,
}

/// Every capability the contract defines, and whether the backend claims it:
/// from [`uvm_api::Backend::capabilities`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityMatrix {
    /// Every (resource, operation) pair the contract defines, in
    /// [`Resource::ALL`] order, and any other pair the backend lists.
    pub resources: Vec<PairClaim>,
    /// Every lifecycle action, in [`Action::ALL`] order.
    pub actions: Vec<ActionClaim>,
    /// Whether [`uvm_api::Backend::restore`] is claimed.
    pub restore: Claim,
}

impl CapabilityMatrix {
    /// The matrix of a backend with these capabilities.
    pub fn of(capabilities: &Capabilities) -> CapabilityMatrix {
        let defined = Capabilities::all_resources();
        let resources = Resource::ALL
            .into_iter()
            .flat_map(|r| Operation::ALL.into_iter().map(move |op| (r, op)))
            .filter(|pair| defined.contains(pair) || capabilities.resources.contains(pair))
            .map(|(resource, operation)| PairClaim {
                resource,
                operation,
                claim: Claim::of(capabilities.supports(resource, operation)),
            })
            .collect();
        let actions = Action::ALL
            .into_iter()
            .map(|action| ActionClaim {
                action,
                claim: if OPTIONAL_ACTIONS.contains(&action) {
                    Claim::of(capabilities.actions.contains(&action))
                } else if REQUIRED_ACTIONS.contains(&action) {
                    Claim::Required
                } else {
                    Claim::PerResource
                },
            })
            .collect();
        CapabilityMatrix {
            resources,
            actions,
            restore: Claim::of(capabilities.restore),
        }
    }

    /// Every entry as (label, claim), in matrix order: `scsi add`,
    /// ..., `action pause`, ..., `restore`.
    pub fn rows(&self) -> Vec<(String, Claim)> {
        let pairs = self
            .resources
            .iter()
            .map(|p| (format!("{} {}", p.resource, p.operation), p.claim));
        let actions = self
            .actions
            .iter()
            .map(|a| (format!("action {}", a.action), a.claim));
        pairs
            .chain(actions)
            .chain([("restore".to_owned(), self.restore)])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_pair_and_action_is_in_the_matrix() {
        let caps = Capabilities {
            resources: [(Resource::Scsi, Operation::Add)].into_iter().collect(),
            actions: [Action::Pause].into_iter().collect(),
            restore: false,
        };
        let matrix = CapabilityMatrix::of(&caps);
        assert_eq!(matrix.resources.len(), Capabilities::all_resources().len());
        let claim = |r, op| {
            matrix
                .resources
                .iter()
                .find(|p| p.resource == r && p.operation == op)
                .map(|p| p.claim)
        };
        assert_eq!(claim(Resource::Scsi, Operation::Add), Some(Claim::Claimed));
        assert_eq!(
            claim(Resource::Scsi, Operation::Remove),
            Some(Claim::NotClaimed)
        );
        assert_eq!(claim(Resource::Scsi, Operation::Update), None);
        assert_eq!(matrix.actions.len(), Action::ALL.len());
        let action = |a| {
            matrix
                .actions
                .iter()
                .find(|x| x.action == a)
                .map(|x| x.claim)
        };
        assert_eq!(action(Action::Pause), Some(Claim::Claimed));
        assert_eq!(action(Action::Save), Some(Claim::NotClaimed));
        assert_eq!(action(Action::Start), Some(Claim::Required));
        assert_eq!(action(Action::Listen), Some(Claim::PerResource));
        assert_eq!(matrix.restore, Claim::NotClaimed);
        let rows = matrix.rows();
        assert_eq!(
            rows.len(),
            matrix.resources.len() + matrix.actions.len() + 1
        );
        assert_eq!(rows[0], ("vpmem add".to_owned(), Claim::NotClaimed));
        assert_eq!(
            rows.last(),
            Some(&("restore".to_owned(), Claim::NotClaimed))
        );
    }

    #[test]
    fn an_undefined_pair_the_backend_lists_is_shown_too() {
        let caps = Capabilities {
            resources: [(Resource::VmSocket, Operation::Remove)]
                .into_iter()
                .collect(),
            ..Capabilities::default()
        };
        let matrix = CapabilityMatrix::of(&caps);
        assert!(matrix.resources.contains(&PairClaim {
            resource: Resource::VmSocket,
            operation: Operation::Remove,
            claim: Claim::Claimed,
        }));
    }

    #[test]
    fn capabilities_name_themselves_and_their_refusal() {
        assert_eq!(
            Capability::Pair(Resource::Pci, Operation::Add).to_string(),
            "(pci, add)"
        );
        assert_eq!(Capability::Action(Action::Save).to_string(), "action save");
        assert!(
            Capability::Action(Action::Save)
                .refusal()
                .contains("ActionNotSupported")
        );
    }
}
