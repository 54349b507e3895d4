//! [`DeviceTable`]: the devices of one kind a backend holds, written once
//! for every backend so that two-phase removal behaves the same everywhere.
//!
//! The contract's two-phase rule (DESIGN.md section 1, "Two-phase removal"):
//! a remove returns once the host side is done, and the device's id stays
//! reserved until the guest has released the device; then the [`Removal`]
//! completes and the id is free for a new add. Removing twice gives
//! `NotFound`; when the VM stops, every pending removal completes.
//!
//! An entry is either *attached* or *releasing*:
//!
//! ```text
//!            insert                begin_release              finish_release
//!   (free) ---------> attached ------------------> releasing ----------------> (free)
//!                      |   ^      cancel_release      |         finish_all / drain
//!         take_attached|   +--------------------------+
//!                      v
//!                    (free)   cold unplug, or an add undone half way
//! ```
//!
//! Each release gets a [`ReleaseTicket`]: only the ticket of the release
//! in progress finishes it, so a late eject notification of an earlier
//! removal of the same id cannot finish a newer one. A finished release is
//! handed back as a [`Released`], whose [`Released::complete`] drops the
//! entry's value (and whatever host resources it owns) *before* it
//! completes the removal: an id is never reported free while the host
//! still holds the device. Call it with no lock held where the value's
//! drop may block.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::removal::{Removal, RemovalCompleter};
use crate::resource::Resource;

/// Identifies one release of one entry; see [`DeviceTable::begin_release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseTicket(u64);

/// A release in progress: who finishes it, and what completes it.
#[derive(Debug)]
struct Pending {
    ticket: ReleaseTicket,
    completer: RemovalCompleter,
}

/// One entry: its value, and its release if one is in progress.
#[derive(Debug)]
struct Entry<V> {
    value: V,
    release: Option<Pending>,
}

/// An entry whose release has finished: it is out of the table, and its
/// removal completes when [`Released::complete`] is called.
///
/// Dropping it without calling `complete` abandons the removal (its waiters
/// get [`Error::Backend`]).
#[derive(Debug)]
#[must_use = "call complete() so that the removal's waiters learn the id is free"]
pub struct Released<V> {
    value: V,
    completer: RemovalCompleter,
}

impl<V> Released<V> {
    /// The entry's value, for bookkeeping before it goes.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Drops the value first, then completes the removal and wakes its waiters.
    pub fn complete(self) {
        let Released { value, completer } = self;
        drop(value);
        completer.complete();
    }

    /// Completes every release in `released` (see [`Released::complete`]);
    /// returns how many there were.
    pub fn complete_all(released: impl IntoIterator<Item = Released<V>>) -> usize {
        released.into_iter().map(Released::complete).count()
    }
}

/// Everything a [`DeviceTable`] held when it was drained (the VM stopped).
#[derive(Debug)]
#[must_use = "call complete() so that pending removals complete"]
pub struct Drained<V> {
    /// Entries whose release was in progress.
    pub released: Vec<Released<V>>,
    /// Entries that were attached.
    pub attached: Vec<V>,
}

impl<V> Drained<V> {
    /// Drops every value, then completes every pending removal; returns how
    /// many removals completed.
    pub fn complete(self) -> usize {
        drop(self.attached);
        Released::complete_all(self.released)
    }
}

/// The devices of one kind a VM holds, by key (a slot, an address, a name).
#[derive(Debug)]
pub struct DeviceTable<K, V> {
    entries: BTreeMap<K, Entry<V>>,
    next_ticket: u64,
}

impl<K, V> Default for DeviceTable<K, V> {
    fn default() -> Self {
        DeviceTable {
            entries: BTreeMap::new(),
            next_ticket: 0,
        }
    }
}

impl<K: Ord + Clone, V> DeviceTable<K, V> {
    /// An empty table.
    pub fn new() -> Self {
        DeviceTable::default()
    }

    /// Whether `key` is taken: attached, or released but not yet let go by the guest.
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The value at `key` if it is attached (not being released).
    pub fn attached(&self, key: &K) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|e| e.release.is_none())
            .map(|e| &e.value)
    }

    /// The value at `key` while the guest still has the device (attached
    /// or being released), for changes that do not touch its release.
    pub fn visible_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|e| &mut e.value)
    }

    /// Attached entries, in key order.
    pub fn iter_attached(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.release.is_none())
            .map(|(k, e)| (k, &e.value))
    }

    /// Every entry the guest still has (attached or being released), in key order.
    pub fn iter_visible(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, e)| (k, &e.value))
    }

    /// How many keys are taken.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is taken.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Attaches `value` at a free `key`.
    ///
    /// # Errors
    /// Hands `value` back, and changes nothing, if `key` is taken (attached
    /// or being released): a caller checks [`DeviceTable::contains`] first
    /// and reports `AlreadyExists` with its own name for the key.
    pub fn insert(&mut self, key: K, value: V) -> Result<(), V> {
        if self.entries.contains_key(&key) {
            return Err(value);
        }
        self.entries.insert(
            key,
            Entry {
                value,
                release: None,
            },
        );
        Ok(())
    }

    /// Removes the attached entry at `key` at once, with no guest to ask: a
    /// cold unplug before start, or an add undone half way. `None` (and no
    /// change) if `key` is not attached.
    pub fn take_attached(&mut self, key: &K) -> Option<V> {
        self.attached(key)?;
        self.entries.remove(key).map(|e| e.value)
    }

    /// Starts releasing the attached entry at `key`: the key stays taken
    /// and the entry leaves [`DeviceTable::attached`], until
    /// [`DeviceTable::finish_release`] with the returned ticket.
    ///
    /// Returns the [`Removal`] for the caller (resource `resource`, id `id`)
    /// and the ticket of this release.
    ///
    /// # Errors
    /// `NotFound { resource, id }` if nothing is attached at `key` (absent,
    /// or already being released: removing twice gives `NotFound`).
    pub fn begin_release(
        &mut self,
        key: &K,
        resource: Resource,
        id: impl Into<String>,
    ) -> Result<(Removal, ReleaseTicket)> {
        let id = id.into();
        let ticket = ReleaseTicket(self.next_ticket);
        let Some(entry) = self.entries.get_mut(key).filter(|e| e.release.is_none()) else {
            return Err(Error::not_found(resource, id));
        };
        let (removal, completer) = Removal::pending(resource, id);
        entry.release = Some(Pending { ticket, completer });
        self.next_ticket += 1;
        Ok((removal, ticket))
    }

    /// Ends release `ticket` of the entry at `key`: the entry leaves the
    /// table and is handed back; [`Released::complete`] frees the id.
    ///
    /// `None` (and no change) if that release is not in progress: the entry
    /// is attached, absent, or being released under another ticket.
    pub fn finish_release(&mut self, key: &K, ticket: ReleaseTicket) -> Option<Released<V>> {
        let in_progress = self
            .entries
            .get(key)
            .and_then(|e| e.release.as_ref())
            .is_some_and(|p| p.ticket == ticket);
        if !in_progress {
            return None;
        }
        self.entries.remove(key).and_then(Entry::into_released)
    }

    /// Undoes release `ticket` of the entry at `key` (the host side of the
    /// removal failed): the entry is attached again and the removal is
    /// dropped. Returns whether that release was in progress.
    pub fn cancel_release(&mut self, key: &K, ticket: ReleaseTicket) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) if entry.release.as_ref().is_some_and(|p| p.ticket == ticket) => {
                entry.release = None;
                true
            }
            _ => false,
        }
    }

    /// Ends every release in progress (the VM stopped, so the devices are
    /// gone) and hands them back; attached entries stay.
    pub fn finish_all(&mut self) -> Vec<Released<V>> {
        let releasing: Vec<K> = self
            .entries
            .iter()
            .filter(|(_, e)| e.release.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        releasing
            .iter()
            .filter_map(|k| self.entries.remove(k))
            .filter_map(Entry::into_released)
            .collect()
    }

    /// Empties the table (the VM stopped and its devices went with it).
    pub fn drain(&mut self) -> Drained<V> {
        let mut drained = Drained {
            released: Vec::new(),
            attached: Vec::new(),
        };
        for (_, entry) in std::mem::take(&mut self.entries) {
            match entry.release {
                Some(Pending { completer, .. }) => drained.released.push(Released {
                    value: entry.value,
                    completer,
                }),
                None => drained.attached.push(entry.value),
            }
        }
        drained
    }
}

impl<V> Entry<V> {
    /// The entry as a finished release, if it was being released.
    fn into_released(self) -> Option<Released<V>> {
        let completer = self.release?.completer;
        Some(Released {
            value: self.value,
            completer,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    fn table(keys: &[u32]) -> DeviceTable<u32, String> {
        let mut t = DeviceTable::new();
        for k in keys {
            t.insert(*k, format!("dev{k}")).unwrap();
        }
        t
    }

    #[test]
    fn an_id_stays_taken_until_its_release_finishes() {
        let mut t = table(&[1]);
        let (removal, ticket) = t.begin_release(&1, Resource::VPMem, "1").unwrap();
        assert_eq!((removal.resource(), removal.id()), (Resource::VPMem, "1"));
        assert!(t.contains(&1) && t.attached(&1).is_none());
        assert_eq!(t.iter_visible().count(), 1);
        assert_eq!(t.iter_attached().count(), 0);
        assert_eq!(t.insert(1, "again".into()), Err("again".to_owned()));
        let released = t.finish_release(&1, ticket).unwrap();
        assert_eq!(released.value(), "dev1");
        assert!(!t.contains(&1) && !removal.is_complete());
        released.complete();
        assert!(removal.is_complete());
        assert!(t.finish_release(&1, ticket).is_none());
    }

    #[test]
    fn removing_twice_or_a_missing_key_is_not_found() {
        let mut t = table(&[1]);
        let _first = t.begin_release(&1, Resource::Scsi, "0:1").unwrap();
        for key in [1, 7] {
            match t.begin_release(&key, Resource::Scsi, "0:1") {
                Err(Error::NotFound { resource, id }) => {
                    assert_eq!((resource, id.as_str()), (Resource::Scsi, "0:1"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_stale_ticket_cannot_finish_a_newer_release() {
        let mut t = table(&[1]);
        let (first, old) = t.begin_release(&1, Resource::Network, "eth").unwrap();
        t.finish_release(&1, old).unwrap().complete();
        assert!(first.is_complete());
        t.insert(1, "new".into()).unwrap();
        let (second, new) = t.begin_release(&1, Resource::Network, "eth").unwrap();
        assert_ne!(old, new);
        assert!(t.finish_release(&1, old).is_none());
        assert!(!t.cancel_release(&1, old));
        assert!(t.contains(&1) && !second.is_complete());
        t.finish_release(&1, new).unwrap().complete();
        assert!(second.is_complete());
    }

    #[test]
    fn the_value_goes_before_the_removal_completes() {
        struct Owner {
            removal: Removal,
            checked: Arc<AtomicBool>,
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                assert!(!self.removal.is_complete(), "completed before the drop");
                self.checked.store(true, Ordering::SeqCst);
            }
        }
        let mut t = DeviceTable::new();
        let checked = Arc::new(AtomicBool::new(false));
        // The owner needs the removal handle, which exists once the release begins.
        assert!(t.insert(0u8, None::<Owner>).is_ok());
        let (removal, ticket) = t.begin_release(&0, Resource::Pci, "gpu").unwrap();
        *t.visible_mut(&0).unwrap() = Some(Owner {
            removal: removal.clone(),
            checked: checked.clone(),
        });
        t.finish_release(&0, ticket).unwrap().complete();
        assert!(checked.load(Ordering::SeqCst) && removal.is_complete());
    }

    #[test]
    fn cancel_attaches_again_and_abandons_the_removal() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut t = table(&[4]);
        let (removal, ticket) = t.begin_release(&4, Resource::Scsi, "0:4").unwrap();
        assert!(t.cancel_release(&4, ticket));
        assert_eq!(t.attached(&4).map(String::as_str), Some("dev4"));
        let err = rt
            .block_on(removal.wait(Duration::from_secs(1)))
            .unwrap_err();
        assert!(err.to_string().contains("abandoned"), "{err}");
        assert!(!t.cancel_release(&4, ticket));
    }

    #[test]
    fn cold_removal_takes_only_attached_entries() {
        let mut t = table(&[1, 2]);
        let _r = t.begin_release(&2, Resource::VPMem, "2").unwrap();
        assert_eq!(t.take_attached(&1).as_deref(), Some("dev1"));
        assert_eq!(t.take_attached(&2), None);
        assert_eq!(t.take_attached(&3), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn finish_all_completes_releases_and_keeps_attached_entries() {
        let mut t = table(&[0, 1, 2, 7]);
        let removals: Vec<Removal> = (0..3)
            .map(|k| {
                t.begin_release(&k, Resource::VPMem, k.to_string())
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(Released::complete_all(t.finish_all()), 3);
        assert!(removals.iter().all(Removal::is_complete));
        assert_eq!(t.iter_attached().map(|(k, _)| *k).collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn drain_empties_the_table() {
        let mut t = table(&[1, 2]);
        let (removal, _) = t.begin_release(&2, Resource::Scsi, "2").unwrap();
        let drained = t.drain();
        assert_eq!((drained.attached.len(), drained.released.len()), (1, 1));
        assert_eq!(drained.complete(), 1);
        assert!(removal.is_complete() && t.is_empty());
    }
}
