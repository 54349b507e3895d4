//! The module tree of one crate root, as far as imports go: which file
//! each module lives in, the names each module binds, and the paths each
//! file refers to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Index of a module in [`Tree::modules`].
pub type ModId = usize;
/// Index of a file in [`Tree::files`].
pub type FileId = usize;

/// What a name in a module stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A module (declared with `mod`, inline or in a file of its own).
    Module(ModId),
    /// An item (fn, struct, enum, trait, type, const, static, union)
    /// defined in a file.
    Item(FileId),
    /// An import: a `use` path, resolved in the module that holds it.
    Import(Vec<String>),
}

/// One name bound in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// What the name stands for.
    pub target: Target,
    /// Whether it is visible outside the module (any `pub`, `pub(crate)`,
    /// `pub(super)`, ...); a private one is visible to the module's own
    /// descendants only.
    pub public: bool,
}

/// A module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The enclosing module; `None` for the crate root.
    pub parent: Option<ModId>,
    /// The file its items are written in.
    pub file: FileId,
    /// The names it binds: definitions, submodules and imports.
    pub bindings: BTreeMap<String, Vec<Binding>>,
    /// Its glob imports (`use path::*`), with their visibility.
    pub globs: Vec<(Vec<String>, bool)>,
}

/// How a file refers to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A private `use` leaf: always a dependency of the file.
    Use,
    /// A re-export (`pub use`) bound as the given name: a dependency of the
    /// file only when the file's own code mentions that name too.
    ReExport,
    /// A path written in code (`crate::vmm::VmmEvent::Guest`).
    Code,
    /// A glob import (`use path::*`): every name the glob brings in that the
    /// file's code mentions.
    Glob,
}

/// A path some file refers to, to resolve once every file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The file the path is written in.
    pub file: FileId,
    /// The module it is resolved in.
    pub module: ModId,
    /// Its segments (`crate`, `super`, `self` included).
    pub path: Vec<String>,
    /// How the file refers to it.
    pub kind: RefKind,
    /// For a re-export, the name it is bound as (checked against the
    /// file's mentions).
    pub bound_as: Option<String>,
}

/// The module tree of one crate root.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// The files, relative to the crate's `src/`.
    pub files: Vec<PathBuf>,
    /// The modules; the root is 0.
    pub modules: Vec<Module>,
    /// Every path the files refer to.
    pub references: Vec<Reference>,
    /// Per file, the identifiers its code mentions outside `use` items
    /// and test modules (macro arguments included).
    pub mentions: Vec<BTreeSet<String>>,
}

impl Tree {
    /// Adds a file and returns its id.
    pub fn add_file(&mut self, path: PathBuf) -> FileId {
        self.files.push(path);
        self.mentions.push(BTreeSet::new());
        self.files.len() - 1
    }

    /// Adds a module living in `file` and returns its id.
    pub fn add_module(&mut self, parent: Option<ModId>, file: FileId) -> ModId {
        self.modules.push(Module {
            parent,
            file,
            bindings: BTreeMap::new(),
            globs: Vec::new(),
        });
        self.modules.len() - 1
    }

    /// Binds `name` in `module`.
    pub fn bind(&mut self, module: ModId, name: &str, target: Target, public: bool) {
        self.modules[module]
            .bindings
            .entry(name.to_owned())
            .or_default()
            .push(Binding { target, public });
    }

    /// Whether `module` is `ancestor` or lies inside it.
    pub fn is_within(&self, module: ModId, ancestor: ModId) -> bool {
        let mut current = Some(module);
        while let Some(m) = current {
            if m == ancestor {
                return true;
            }
            current = self.modules[m].parent;
        }
        false
    }
}
