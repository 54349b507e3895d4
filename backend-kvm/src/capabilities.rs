//! What the kvm backend claims, in one place: the (resource, operation)
//! pairs and the optional lifecycle actions it implements. The backend's
//! static matrix ([`crate::KvmBackend`]'s `capabilities`), every VM's
//! `supported` and `supports_action` answer from here.

use uvm_api::{Action, Capabilities, Operation, Resource};

/// The (resource, operation) pairs the kvm backend implements: vsock, and
/// SCSI, VPMem and network add and remove (cold and hot plug, see
/// [`crate::managers`]).
pub const RESOURCES: &[(Resource, Operation)] = &[
    (Resource::VmSocket, Operation::Add),
    (Resource::Scsi, Operation::Add),
    (Resource::Scsi, Operation::Remove),
    (Resource::VPMem, Operation::Add),
    (Resource::VPMem, Operation::Remove),
    (Resource::Network, Operation::Add),
    (Resource::Network, Operation::Remove),
];

/// The pairs added when a `virtiofsd` binary is available (shared folders).
pub const SHARE_RESOURCES: &[(Resource, Operation)] = &[
    (Resource::VirtioFs, Operation::Add),
    (Resource::VirtioFs, Operation::Remove),
];

/// The optional lifecycle actions the kvm backend implements (save and
/// restore are not implemented yet).
pub const ACTIONS: &[Action] = &[Action::Pause, Action::Resume];

/// Whether the kvm backend implements `operation` on `resource`, given
/// whether it has a `virtiofsd` to serve shared folders with.
pub fn supports(resource: Resource, operation: Operation, virtiofsd: bool) -> bool {
    RESOURCES.contains(&(resource, operation))
        || (virtiofsd && SHARE_RESOURCES.contains(&(resource, operation)))
}

/// Whether a VM of the kvm backend can do lifecycle `action` (start and
/// stop always, the optional ones if claimed).
pub fn supports_action(action: Action) -> bool {
    matches!(action, Action::Start | Action::Stop) || ACTIONS.contains(&action)
}

/// The backend's capability matrix, given whether it has a `virtiofsd`.
pub fn matrix(virtiofsd: bool) -> Capabilities {
    Capabilities {
        resources: RESOURCES
            .iter()
            .chain(if virtiofsd { SHARE_RESOURCES } else { &[] })
            .copied()
            .collect(),
        actions: ACTIONS.iter().copied().collect(),
        restore: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_and_the_answers_agree() {
        for virtiofsd in [false, true] {
            let m = matrix(virtiofsd);
            for (r, op) in Capabilities::all_resources() {
                assert_eq!(m.supports(r, op), supports(r, op, virtiofsd), "{r} {op}");
            }
            for a in Action::ALL {
                if !matches!(a, Action::Start | Action::Stop) {
                    assert_eq!(m.actions.contains(&a), supports_action(a), "{a:?}");
                }
            }
        }
        assert!(!supports(Resource::Pci, Operation::Add, true));
        assert!(supports(Resource::VirtioFs, Operation::Add, true));
        assert!(!supports(Resource::VirtioFs, Operation::Add, false));
    }
}
