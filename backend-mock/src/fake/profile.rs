//! Which capabilities a fake backend has.

use std::collections::BTreeSet;

use uvm_api::{Action, Capabilities, Operation, Resource};

/// The optional lifecycle actions a profile can switch.
const OPTIONAL_ACTIONS: [Action; 3] = [Action::Pause, Action::Resume, Action::Save];

/// The capabilities a [`crate::FakeBackend`] and its VMs have: which
/// (resource, operation) pairs work, which optional lifecycle actions
/// (pause, resume, save) work, and whether restore works.
///
/// Only pairs the contract defines ([`Resource::defined_operations`]) can be
/// switched on; start and stop always work. `Profile::default()` is
/// [`Profile::all`], like [`crate::FakeOptions::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    resources: BTreeSet<(Resource, Operation)>,
    actions: BTreeSet<Action>,
    restore: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::all()
    }
}

impl Profile {
    /// Every capability: all defined (resource, operation) pairs, pause,
    /// resume, save and restore.
    pub fn all() -> Profile {
        Profile {
            resources: Capabilities::all_resources(),
            actions: OPTIONAL_ACTIONS.into_iter().collect(),
            restore: true,
        }
    }

    /// No optional capability: no resource operation, no pause, resume,
    /// save or restore. Such a VM can only be started, stopped and waited on.
    pub fn none() -> Profile {
        Profile {
            resources: BTreeSet::new(),
            actions: BTreeSet::new(),
            restore: false,
        }
    }

    /// This profile without `operation` on `resource`.
    #[must_use]
    pub fn without(mut self, resource: Resource, operation: Operation) -> Profile {
        self.resources.remove(&(resource, operation));
        self
    }

    /// This profile with `operation` on `resource`. A pair the contract does
    /// not define (for example removing a vsock) is ignored: no manager
    /// method exists for it.
    #[must_use]
    pub fn with(mut self, resource: Resource, operation: Operation) -> Profile {
        if resource.defined_operations().contains(&operation) {
            self.resources.insert((resource, operation));
        }
        self
    }

    /// This profile without the lifecycle action `action` (pause, resume or
    /// save). Start, stop and the state-only actions cannot be switched off;
    /// they are ignored.
    #[must_use]
    pub fn without_action(mut self, action: Action) -> Profile {
        self.actions.remove(&action);
        self
    }

    /// This profile with the lifecycle action `action` (pause, resume or
    /// save); other actions are ignored.
    #[must_use]
    pub fn with_action(mut self, action: Action) -> Profile {
        if OPTIONAL_ACTIONS.contains(&action) {
            self.actions.insert(action);
        }
        self
    }

    /// This profile with [`uvm_api::Backend::restore`] switched on or off.
    #[must_use]
    pub fn with_restore(mut self, restore: bool) -> Profile {
        self.restore = restore;
        self
    }

    /// A deterministic pseudo-random subset of [`Profile::all`]: the same
    /// seed always gives the same profile.
    pub fn random(seed: u64) -> Profile {
        let mut rng = XorShift::new(seed);
        let resources = Capabilities::all_resources()
            .into_iter()
            .filter(|_| rng.coin())
            .collect();
        let actions = OPTIONAL_ACTIONS
            .into_iter()
            .filter(|_| rng.coin())
            .collect();
        Profile {
            resources,
            actions,
            restore: rng.coin(),
        }
    }

    /// Whether `operation` on `resource` is on.
    pub fn allows(&self, resource: Resource, operation: Operation) -> bool {
        self.resources.contains(&(resource, operation))
    }

    /// Whether lifecycle action `action` works: start and stop always,
    /// pause, resume and save when on, the others never (they are not
    /// actions a caller asks for by themselves).
    pub fn allows_action(&self, action: Action) -> bool {
        match action {
            Action::Start | Action::Stop => true,
            Action::Pause | Action::Resume | Action::Save => self.actions.contains(&action),
            Action::ChangeDevices | Action::UpdateResources | Action::Listen | Action::Connect => {
                false
            }
        }
    }

    /// Whether restoring from a snapshot works.
    pub fn allows_restore(&self) -> bool {
        self.restore
    }

    /// Whether any operation of any of `resources` is on (a manager serving
    /// them is then present).
    pub fn allows_any(&self, resources: &[Resource]) -> bool {
        self.resources.iter().any(|(r, _)| resources.contains(r))
    }

    /// The capability matrix of a backend with this profile.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            resources: self.resources.clone(),
            actions: self.actions.clone(),
            restore: self.restore,
        }
    }
}

/// A tiny xorshift64 generator: enough to pick deterministic subsets.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Spread the seed so that nearby seeds differ quickly; xorshift must not start at zero.
        let spread = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        XorShift(if spread == 0 {
            0x2545_F491_4F6C_DD1D
        } else {
            spread
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_none_are_opposites() {
        let all = Profile::all();
        let none = Profile::none();
        for (r, op) in Capabilities::all_resources() {
            assert!(all.allows(r, op));
            assert!(!none.allows(r, op));
        }
        for a in OPTIONAL_ACTIONS {
            assert!(all.allows_action(a));
            assert!(!none.allows_action(a));
        }
        assert!(all.allows_action(Action::Start) && none.allows_action(Action::Stop));
        assert!(all.allows_restore() && !none.allows_restore());
    }

    #[test]
    fn random_is_deterministic_and_varies() {
        assert_eq!(Profile::random(7), Profile::random(7));
        let distinct: BTreeSet<_> = (0..32)
            .map(|s| Profile::random(s).resources.len())
            .collect();
        assert!(distinct.len() > 3, "{distinct:?}");
        for s in 0..32 {
            let p = Profile::random(s);
            assert!(p.resources.is_subset(&Capabilities::all_resources()));
        }
    }

    #[test]
    fn undefined_pairs_are_ignored() {
        let p = Profile::none().with(Resource::VmSocket, Operation::Remove);
        assert!(!p.allows(Resource::VmSocket, Operation::Remove));
        let p = Profile::all().without_action(Action::Start);
        assert!(p.allows_action(Action::Start));
    }
}
