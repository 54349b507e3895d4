//! What the process holds, from `/proc/self`: threads and open file descriptors.

use std::collections::BTreeMap;
use std::path::Path;

/// The threads and file descriptors of this process at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Holdings {
    /// Thread id to thread name.
    pub(crate) threads: BTreeMap<u32, String>,
    /// File descriptor to what it points at.
    pub(crate) fds: BTreeMap<u32, String>,
}

/// Whether `/proc/self` can be read on this host.
pub(crate) fn available() -> bool {
    Path::new("/proc/self/task").is_dir() && Path::new("/proc/self/fd").is_dir()
}

/// The numeric entries of a `/proc` directory (thread ids, descriptors).
pub(crate) fn numbered_entries(dir: &str) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(n) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Lists the process's threads and file descriptors now.
pub(crate) fn holdings() -> std::io::Result<Holdings> {
    let mut h = Holdings::default();
    for tid in numbered_entries("/proc/self/task")? {
        // A thread may exit between the listing and the read: skip it then.
        if let Ok(name) = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")) {
            h.threads.insert(tid, name.trim().to_owned());
        }
    }
    for fd in numbered_entries("/proc/self/fd")? {
        if let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            h.fds.insert(fd, target.to_string_lossy().into_owned());
        }
    }
    Ok(h)
}

impl Holdings {
    /// What `self` holds that `before` did not: new threads, new descriptors.
    pub(crate) fn since(&self, before: &Holdings) -> Holdings {
        Holdings {
            threads: self
                .threads
                .iter()
                .filter(|(tid, _)| !before.threads.contains_key(tid))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            fds: self
                .fds
                .iter()
                .filter(|(fd, target)| before.fds.get(fd) != Some(target))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        }
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.threads.is_empty() && self.fds.is_empty()
    }

    /// A short description, grouping threads by name and descriptors by target.
    pub(crate) fn describe(&self) -> String {
        fn group<'a>(items: impl Iterator<Item = &'a String>) -> String {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for item in items {
                *counts.entry(item.as_str()).or_default() += 1;
            }
            counts
                .into_iter()
                .take(8)
                .map(|(name, n)| format!("{n}× {name}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
        let mut parts = Vec::new();
        if !self.threads.is_empty() {
            parts.push(format!(
                "{} threads ({})",
                self.threads.len(),
                group(self.threads.values())
            ));
        }
        if !self.fds.is_empty() {
            parts.push(format!(
                "{} file descriptors ({})",
                self.fds.len(),
                group(self.fds.values())
            ));
        }
        if parts.is_empty() {
            "nothing".to_owned()
        } else {
            parts.join(" and ")
        }
    }
}

/// Descriptors of this process open on `path`.
pub(crate) fn fds_on(path: &Path) -> std::io::Result<Vec<u32>> {
    let want = path.to_string_lossy();
    Ok(holdings()?
        .fds
        .into_iter()
        .filter(|(_, target)| *target == want)
        .map(|(fd, _)| fd)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_new_thread_and_a_new_file() {
        if !available() {
            return;
        }
        let before = holdings().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let file = std::fs::File::create(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("probe-thread".into())
            .spawn(move || {
                // The name is set by the thread itself as it starts.
                started_tx.send(()).unwrap();
                let _ = rx.recv();
            })
            .unwrap();
        started.recv().unwrap();
        let new = holdings().unwrap().since(&before);
        assert!(new.threads.values().any(|n| n == "probe-thread"), "{new:?}");
        assert_eq!(fds_on(&path).unwrap().len(), 1);
        drop(tx);
        t.join().unwrap();
        drop(file);
        assert!(fds_on(&path).unwrap().is_empty());
    }
}
