//! Resolves the paths a [`Tree`]'s files refer to, through imports and
//! re-exports, to the files that define the items they name: the
//! file-level import graph.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use super::tree::{FileId, ModId, RefKind, Target, Tree};

/// The import graph: for each (importing file, defining file), the names of
/// the items imported. Files are paths relative to the crate's `src/`.
pub type Edges = BTreeMap<(PathBuf, PathBuf), BTreeSet<String>>;

/// What a path resolves to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Resolved {
    /// A module.
    Module(ModId),
    /// An item, by its defining file and name. Paths that go on past an
    /// item (enum variants, associated items) stay with the item.
    Item(FileId, String),
}

/// Path resolution over one tree, guarding against import loops.
struct Resolver<'t> {
    tree: &'t Tree,
    /// The (module, name) lookups under way, to stop at import loops.
    active: HashSet<(ModId, String)>,
}

impl<'t> Resolver<'t> {
    /// Resolves `path` as written in module `from`.
    fn path(&mut self, from: ModId, path: &[String]) -> Vec<Resolved> {
        let Some((first, rest)) = path.split_first() else {
            return Vec::new();
        };
        let mut current = match first.as_str() {
            "crate" => vec![Resolved::Module(0)],
            "self" => vec![Resolved::Module(from)],
            "super" => self.tree.modules[from]
                .parent
                .map(Resolved::Module)
                .into_iter()
                .collect(),
            name => self.lookup(from, name, from),
        };
        for segment in rest {
            let mut next = BTreeSet::new();
            for resolved in current {
                match resolved {
                    Resolved::Module(m) => match segment.as_str() {
                        "super" => next.extend(self.tree.modules[m].parent.map(Resolved::Module)),
                        "self" => {
                            next.insert(Resolved::Module(m));
                        }
                        name => next.extend(self.lookup(m, name, from)),
                    },
                    item @ Resolved::Item(..) => {
                        next.insert(item);
                    }
                }
            }
            current = next.into_iter().collect();
        }
        current
    }

    /// What `name` stands for in `module`, as seen from `importer`: its own
    /// bindings (imports followed), else what its glob imports bring.
    fn lookup(&mut self, module: ModId, name: &str, importer: ModId) -> Vec<Resolved> {
        let key = (module, name.to_owned());
        if !self.active.insert(key.clone()) {
            return Vec::new();
        }
        let tree = self.tree;
        let visible = |public: bool| public || tree.is_within(importer, module);
        let mut out = Vec::new();
        match tree.modules[module].bindings.get(name) {
            Some(bindings) => {
                for binding in bindings.iter().filter(|b| visible(b.public)) {
                    match &binding.target {
                        Target::Module(m) => out.push(Resolved::Module(*m)),
                        Target::Item(file) => out.push(Resolved::Item(*file, name.to_owned())),
                        Target::Import(path) => out.extend(self.path(module, path)),
                    }
                }
            }
            None => {
                for (glob, public) in &tree.modules[module].globs {
                    if !visible(*public) {
                        continue;
                    }
                    for target in self.path(module, glob) {
                        if let Resolved::Module(t) = target {
                            out.extend(self.lookup(t, name, module));
                        }
                    }
                }
            }
        }
        self.active.remove(&key);
        out
    }

    /// The items a glob import in `module` brings in under the names in
    /// `mentions` (names the module binds itself shadow the glob's).
    fn glob_items(
        &mut self,
        module: ModId,
        glob: &[String],
        mentions: &BTreeSet<String>,
    ) -> Vec<Resolved> {
        let mut out = Vec::new();
        for target in self.path(module, glob) {
            match target {
                Resolved::Module(t) => {
                    for name in mentions {
                        if !self.tree.modules[module].bindings.contains_key(name) {
                            out.extend(self.lookup(t, name, module));
                        }
                    }
                }
                // `use Enum::*`: the variants live with the enum.
                item @ Resolved::Item(..) => out.push(item),
            }
        }
        out
    }
}

/// The import graph of `tree` (see [`super`] for the rules).
pub fn edges(tree: &Tree) -> Edges {
    let mut resolver = Resolver {
        tree,
        active: HashSet::new(),
    };
    let mut edges = Edges::new();
    for reference in &tree.references {
        let mentions = &tree.mentions[reference.file];
        let resolved = match reference.kind {
            RefKind::Use | RefKind::Code => resolver.path(reference.module, &reference.path),
            RefKind::ReExport => match &reference.bound_as {
                Some(name) if mentions.contains(name) => {
                    resolver.path(reference.module, &reference.path)
                }
                _ => Vec::new(),
            },
            RefKind::Glob => resolver.glob_items(reference.module, &reference.path, mentions),
        };
        for target in resolved {
            if let Resolved::Item(file, name) = target
                && file != reference.file
            {
                let key = (tree.files[reference.file].clone(), tree.files[file].clone());
                edges.entry(key).or_default().insert(name);
            }
        }
    }
    edges
}
