//! A table of devices with two-phase removal: an entry being released keeps
//! its key reserved until the guest lets it go.

use std::collections::BTreeMap;

use uvm_api::RemovalCompleter;

/// A removal in progress: the serial ties it to the eject task that will finish it.
#[derive(Debug)]
pub(crate) struct Release {
    pub serial: u64,
    pub completer: RemovalCompleter,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    release: Option<Release>,
}

/// Devices by key. An entry is attached, or attached and being released.
#[derive(Debug)]
pub(crate) struct Table<K: Ord, V> {
    entries: BTreeMap<K, Slot<V>>,
}

impl<K: Ord, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> Table<K, V> {
    /// Whether the key is taken (attached or still being released).
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The device at `key` unless it is being removed.
    pub fn attached(&self, key: &K) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|s| s.release.is_none())
            .map(|s| &s.value)
    }

    /// Every device the guest still has (attached or being released), in key order.
    pub fn visible(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, s)| (k, &s.value))
    }

    /// Mutable access to a device the guest still has (attached or being released).
    pub fn visible_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|s| &mut s.value)
    }

    /// Devices not being removed, in key order.
    pub fn attached_iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .iter()
            .filter(|(_, s)| s.release.is_none())
            .map(|(k, s)| (k, &s.value))
    }

    /// Adds a device; the caller has checked the key is free.
    pub fn insert(&mut self, key: K, value: V) {
        self.entries.insert(
            key,
            Slot {
                value,
                release: None,
            },
        );
    }

    /// Removes an attached device at once (cold unplug).
    pub fn remove_now(&mut self, key: &K) -> Option<V> {
        self.attached(key)?;
        self.entries.remove(key).map(|s| s.value)
    }

    /// Marks an attached device as being released. False if there is no
    /// attached device at `key` (the release is then dropped unused).
    pub fn begin_release(&mut self, key: &K, release: Release) -> bool {
        match self.entries.get_mut(key) {
            Some(slot) if slot.release.is_none() => {
                slot.release = Some(release);
                true
            }
            _ => false,
        }
    }

    /// Completes the release numbered `serial` of the device at `key`: the
    /// device is gone and its key free. False if that release is not pending.
    pub fn finish_release(&mut self, key: &K, serial: u64) -> bool {
        let pending = self
            .entries
            .get(key)
            .and_then(|s| s.release.as_ref())
            .is_some_and(|r| r.serial == serial);
        if !pending {
            return false;
        }
        if let Some(Slot {
            release: Some(release),
            ..
        }) = self.entries.remove(key)
        {
            release.completer.complete();
        }
        true
    }

    /// Completes every pending release (the VM stopped: the devices are gone).
    /// Returns how many there were.
    pub fn finish_all(&mut self) -> usize {
        let keys: Vec<K> = self
            .entries
            .iter()
            .filter(|(_, s)| s.release.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            if let Some(Slot {
                release: Some(release),
                ..
            }) = self.entries.remove(key)
            {
                release.completer.complete();
            }
        }
        keys.len()
    }

    /// Number of keys taken.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uvm_api::{Removal, Resource};

    #[test]
    fn release_reserves_until_finished() {
        let mut t: Table<u32, &str> = Table::default();
        t.insert(1, "a");
        let (removal, completer) = Removal::pending(Resource::VPMem, "1");
        assert!(t.begin_release(
            &1,
            Release {
                serial: 9,
                completer
            }
        ));
        assert!(t.contains(&1) && t.attached(&1).is_none());
        let (_r2, c2) = Removal::pending(Resource::VPMem, "1");
        assert!(!t.begin_release(
            &1,
            Release {
                serial: 10,
                completer: c2
            }
        ));
        assert!(!t.finish_release(&1, 8));
        assert!(!removal.is_complete());
        assert!(t.finish_release(&1, 9));
        assert!(removal.is_complete() && !t.contains(&1));
    }

    #[test]
    fn finish_all_completes_every_pending_release() {
        let mut t: Table<u32, ()> = Table::default();
        let mut removals = vec![];
        for k in 0..3 {
            t.insert(k, ());
            let (r, c) = Removal::pending(Resource::VPMem, k.to_string());
            assert!(t.begin_release(
                &k,
                Release {
                    serial: k.into(),
                    completer: c
                }
            ));
            removals.push(r);
        }
        t.insert(7, ());
        assert_eq!(t.finish_all(), 3);
        assert!(removals.iter().all(Removal::is_complete));
        assert_eq!(t.len(), 1);
    }
}
