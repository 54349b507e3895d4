//! Circles in a directed graph of files: its strongly connected groups,
//! and in each the shortest circle through every edge of the group.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One circle: `files` starts and ends with the same file; `names[i]` are
/// the names the edge `files[i] -> files[i + 1]` imports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Circle<N> {
    /// The files around the circle, the first repeated at the end.
    pub files: Vec<N>,
    /// The names each edge of the circle imports.
    pub names: Vec<BTreeSet<String>>,
}

/// Every circle worth showing in the graph given by `edges`: for each edge
/// that lies on some circle, the shortest circle through it, each circle
/// once (rotated to start at its least file), shortest first.
pub fn circles<N: Ord + Clone>(edges: &BTreeMap<(N, N), BTreeSet<String>>) -> Vec<Circle<N>> {
    let mut next: BTreeMap<&N, Vec<&N>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let mut found = BTreeSet::new();
    for (from, to) in edges.keys() {
        if let Some(back) = shortest_path(&next, to, from) {
            let mut cycle: Vec<N> = std::iter::once(from.clone()).chain(back).collect();
            cycle.pop(); // `from` again
            let start = (0..cycle.len())
                .min_by_key(|&i| &cycle[i])
                .unwrap_or_default();
            cycle.rotate_left(start);
            found.insert(cycle);
        }
    }
    let mut out: Vec<Circle<N>> = found
        .into_iter()
        .map(|mut files| {
            files.push(files[0].clone());
            let names = files
                .windows(2)
                .map(|w| {
                    edges
                        .get(&(w[0].clone(), w[1].clone()))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            Circle { files, names }
        })
        .collect();
    out.sort_by(|a, b| a.files.len().cmp(&b.files.len()).then_with(|| a.cmp(b)));
    out
}

/// The shortest path from `from` to `to` (both included), if any.
fn shortest_path<N: Ord + Clone>(next: &BTreeMap<&N, Vec<&N>>, from: &N, to: &N) -> Option<Vec<N>> {
    let mut came_from: BTreeMap<&N, &N> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![node.clone()];
            let mut at = node;
            while let Some(prev) = came_from.get(at) {
                path.push((*prev).clone());
                at = prev;
            }
            path.reverse();
            return Some(path);
        }
        for &successor in next.get(node).into_iter().flatten() {
            if seen.insert(successor) {
                came_from.insert(successor, node);
                queue.push_back(successor);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(
        edges: &[(&'static str, &'static str, &'static str)],
    ) -> BTreeMap<(&'static str, &'static str), BTreeSet<String>> {
        let mut out: BTreeMap<_, BTreeSet<String>> = BTreeMap::new();
        for (a, b, name) in edges {
            out.entry((*a, *b)).or_default().insert((*name).to_owned());
        }
        out
    }

    #[test]
    fn finds_each_circle_once_starting_at_its_least_file() {
        let edges = graph(&[
            ("uvm", "backend", "supports"),
            ("backend", "uvm", "KvmUvm"),
            ("device", "muxer", "Muxer"),
            ("muxer", "stream", "Stream"),
            ("stream", "device", "VsockHost"),
            ("lib", "device", "Device"),
        ]);
        let found = circles(&edges);
        let files: Vec<Vec<&str>> = found.iter().map(|c| c.files.clone()).collect();
        assert_eq!(
            files,
            [
                vec!["backend", "uvm", "backend"],
                vec!["device", "muxer", "stream", "device"]
            ]
        );
        let names: Vec<Vec<&str>> = found[0]
            .names
            .iter()
            .map(|n| n.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(names, [["KvmUvm"], ["supports"]]);
    }

    #[test]
    fn no_circle_in_a_tree_or_a_diamond() {
        let edges = graph(&[
            ("a", "b", "B"),
            ("a", "c", "C"),
            ("b", "d", "D"),
            ("c", "d", "D"),
        ]);
        assert!(circles(&edges).is_empty());
    }

    #[test]
    fn every_edge_on_a_circle_shows_in_one() {
        // a <-> b and b <-> c share b: two circles, not one long one.
        let edges = graph(&[
            ("a", "b", "1"),
            ("b", "a", "2"),
            ("b", "c", "3"),
            ("c", "b", "4"),
        ]);
        let files: Vec<Vec<&str>> = circles(&edges).into_iter().map(|c| c.files).collect();
        assert_eq!(files, [vec!["a", "b", "a"], vec!["b", "c", "b"]]);
    }
}
