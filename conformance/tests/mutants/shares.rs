//! Mutants of the shares area.

use async_trait::async_trait;
use uvm_api::{Error, Removal, Result, ShareKind, SharedFolder, Uvm};

use crate::Mutant;
use crate::cases::scsi::Releasing;
use crate::lie::{Lie, shares};

const KINDS: [ShareKind; 3] = [ShareKind::VirtioFs, ShareKind::Plan9, ShareKind::Vsmb];

/// [`Releasing`] for shares.
#[derive(Default)]
struct ShareRemovedTwice(Releasing);
#[async_trait]
impl Lie for ShareRemovedTwice {
    fn honest_backend(&self) -> uvm_backend_mock::FakeBackend {
        crate::cases::scsi::slow_to_release()
    }
    async fn remove_share(&self, vm: &dyn Uvm, kind: ShareKind, name: &str) -> Result<Removal> {
        let honest = shares(vm).remove_share(kind, name);
        let id = format!("{kind:?}/{name}");
        match self.0.remove(kind.resource(), id, honest).await {
            // Named as the share (the lie keys its removals by kind and name).
            Ok(removal) if removal.id() != name => Ok(Removal::completed(kind.resource(), name)),
            other => other,
        }
    }
}

/// `remove_share` finds the share by name alone: when the kind named has no
/// share of that name, it removes another kind's.
struct RemoveIgnoresKind;
#[async_trait]
impl Lie for RemoveIgnoresKind {
    async fn remove_share(&self, vm: &dyn Uvm, kind: ShareKind, name: &str) -> Result<Removal> {
        match shares(vm).remove_share(kind, name).await {
            Err(Error::NotFound { resource, id }) => {
                for other in KINDS.into_iter().filter(|k| *k != kind) {
                    if let Ok(removal) = shares(vm).remove_share(other, name).await {
                        let _ = removal;
                        return Ok(Removal::completed(kind.resource(), name));
                    }
                }
                Err(Error::NotFound { resource, id })
            }
            other => other,
        }
    }
}

/// `remove_share` removes every share of that name, whatever its kind.
struct RemoveTakesEveryKind;
#[async_trait]
impl Lie for RemoveTakesEveryKind {
    async fn remove_share(&self, vm: &dyn Uvm, kind: ShareKind, name: &str) -> Result<Removal> {
        let removal = shares(vm).remove_share(kind, name).await?;
        for other in KINDS.into_iter().filter(|k| *k != kind) {
            let _ = shares(vm).remove_share(other, name).await;
        }
        Ok(removal)
    }
}

/// A share name in use is LimitReached instead of AlreadyExists.
struct NameTakenLimitReached;
#[async_trait]
impl Lie for NameTakenLimitReached {
    async fn add_share(&self, vm: &dyn Uvm, share: SharedFolder) -> Result<()> {
        let resource = share.kind.resource();
        match shares(vm).add_share(share).await {
            Err(Error::AlreadyExists { .. }) => Err(Error::LimitReached {
                resource,
                limit: "one share per name".into(),
            }),
            other => other,
        }
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "a share being released can be removed again",
            promise: "shares.remove_while_releasing_not_found",
            lie: || Box::<ShareRemovedTwice>::default(),
            caught_by: &["shares_remove_while_releasing_not_found"],
            collateral: &[],
        },
        Mutant {
            name: "remove_share of the wrong kind removes the share of the right one",
            promise: "shares.remove_is_per_kind",
            lie: || Box::new(RemoveIgnoresKind),
            caught_by: &["shares_remove_names_its_kind"],
            collateral: &[],
        },
        Mutant {
            name: "remove_share removes the same-named shares of every kind",
            promise: "shares.remove_is_per_kind",
            lie: || Box::new(RemoveTakesEveryKind),
            caught_by: &["shares_remove_names_its_kind"],
            // Removes each kind's "data" in turn: the second finds it gone.
            collateral: &["shares_same_name_across_kinds_coexist"],
        },
        Mutant {
            name: "a share name in use is LimitReached",
            promise: "shares.name_taken_already_exists",
            lie: || Box::new(NameTakenLimitReached),
            caught_by: &[
                "shares_same_name_twice_already_exists",
                "shares_name_reserved_until_removal_completes",
            ],
            // It adds a name again to see the share is still there.
            collateral: &["shares_remove_names_its_kind"],
        },
    ]
}
