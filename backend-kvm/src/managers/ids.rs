//! [`IdTable`]: the ids a manager holds, attached or being released.
//!
//! Two-phase removal: an id being released stays taken (`AlreadyExists`
//! for a new add) until the guest has let go of the device; then its
//! [`RemovalCompleter`] fires and the id is free.

use std::collections::BTreeMap;

use uvm_api::RemovalCompleter;

enum Entry<V> {
    Attached(V),
    Releasing(Option<RemovalCompleter>, V),
}

/// Ids of one kind of device and their state.
pub struct IdTable<K, V> {
    entries: BTreeMap<K, Entry<V>>,
}

impl<K: Ord + Clone, V> Default for IdTable<K, V> {
    fn default() -> Self {
        IdTable {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> IdTable<K, V> {
    /// Whether `key` is attached or still being released.
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The attached value of `key` (not one being released).
    pub fn attached(&self, key: &K) -> Option<&V> {
        match self.entries.get(key) {
            Some(Entry::Attached(v)) => Some(v),
            _ => None,
        }
    }

    /// Every entry, attached or being released.
    pub fn all(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, e)| match e {
            Entry::Attached(v) | Entry::Releasing(_, v) => (k, v),
        })
    }

    /// Attaches `value` at `key` (the caller checked [`IdTable::contains`]).
    pub fn insert(&mut self, key: K, value: V) {
        self.entries.insert(key, Entry::Attached(value));
    }

    /// Drops an attached entry at once (an add that failed half way).
    pub fn forget(&mut self, key: &K) -> Option<V> {
        match self.entries.remove(key) {
            Some(Entry::Attached(v) | Entry::Releasing(_, v)) => Some(v),
            None => None,
        }
    }

    /// Moves `key` from attached to releasing; false if it is not attached.
    pub fn begin_release(&mut self, key: &K, completer: RemovalCompleter) -> bool {
        match self.entries.remove(key) {
            Some(Entry::Attached(v)) => {
                self.entries
                    .insert(key.clone(), Entry::Releasing(Some(completer), v));
                true
            }
            Some(other) => {
                self.entries.insert(key.clone(), other);
                false
            }
            None => false,
        }
    }

    /// The guest released `key`: the entry goes and its completer is
    /// returned (call `complete` on it with no lock held).
    pub fn finish_release(&mut self, key: &K) -> Option<(Option<RemovalCompleter>, V)> {
        match self.entries.remove(key) {
            Some(Entry::Releasing(c, v)) => Some((c, v)),
            Some(other) => {
                self.entries.insert(key.clone(), other);
                None
            }
            None => None,
        }
    }

    /// Empties the table (the VM stopped); returns the pending completers
    /// and the values.
    pub fn drain(&mut self) -> (Vec<RemovalCompleter>, Vec<V>) {
        let mut completers = Vec::new();
        let mut values = Vec::new();
        for (_, e) in std::mem::take(&mut self.entries) {
            match e {
                Entry::Attached(v) => values.push(v),
                Entry::Releasing(c, v) => {
                    completers.extend(c);
                    values.push(v);
                }
            }
        }
        (completers, values)
    }
}

#[cfg(test)]
mod tests {
    use uvm_api::{Removal, Resource};

    use super::*;

    #[test]
    fn an_id_stays_taken_until_released() {
        let mut t: IdTable<u8, &str> = IdTable::default();
        t.insert(1, "a");
        let (removal, completer) = Removal::pending(Resource::Scsi, "1");
        assert!(t.begin_release(&1, completer));
        assert!(t.contains(&1));
        assert!(t.attached(&1).is_none());
        let (c, v) = t.finish_release(&1).unwrap();
        assert_eq!(v, "a");
        c.unwrap().complete();
        assert!(removal.is_complete());
        assert!(!t.contains(&1));
        assert!(t.finish_release(&1).is_none());
    }

    #[test]
    fn release_needs_an_attached_entry() {
        let mut t: IdTable<u8, ()> = IdTable::default();
        let (_r, c) = Removal::pending(Resource::Scsi, "9");
        assert!(!t.begin_release(&9, c));
        t.insert(2, ());
        assert!(t.finish_release(&2).is_none());
        assert!(t.contains(&2));
    }

    #[test]
    fn drain_hands_back_pending_completers() {
        let mut t: IdTable<u8, ()> = IdTable::default();
        t.insert(1, ());
        t.insert(2, ());
        let (removal, c) = Removal::pending(Resource::Scsi, "2");
        t.begin_release(&2, c);
        let (completers, values) = t.drain();
        assert_eq!(values.len(), 2);
        for c in completers {
            c.complete();
        }
        assert!(removal.is_complete());
        assert!(!t.contains(&1));
    }
}
