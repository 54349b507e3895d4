//! Finds a crate's roots and reads the files of each root's module tree.

use std::path::{Path, PathBuf};

use super::collect::{PendingMod, collect_file};
use super::tree::{FileId, ModId, Tree};
use crate::error::{Result, XtaskError};

/// The crate roots under `src`, relative to it: `lib.rs`, `main.rs`,
/// `bin/NAME.rs` and `bin/NAME/main.rs`, those that exist.
pub fn crate_roots(src: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| src.join(p).is_file())
        .collect();
    let mut bins: Vec<PathBuf> = std::fs::read_dir(src.join("bin"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = PathBuf::from("bin").join(entry.file_name());
            let path = src.join(&name);
            if path.is_dir() {
                path.join("main.rs").is_file().then(|| name.join("main.rs"))
            } else {
                (path.extension().is_some_and(|e| e == "rs")).then_some(name)
            }
        })
        .collect();
    bins.sort();
    roots.extend(bins);
    roots
}

/// A file to read: where it is, the module it holds, and whether it owns
/// its directory (a crate root, a `mod.rs`, or a file named by `#[path]`),
/// so that its submodules sit beside it rather than in a folder named
/// after it.
struct Pending {
    file: FileId,
    module: ModId,
    owns_dir: bool,
}

/// Reads the module tree rooted at `src/root` (`root` relative to `src`).
/// A `mod` whose file is missing (compiled out for another platform, say)
/// is reported on stderr and left empty.
pub fn load_tree(src: &Path, root: &Path) -> Result<Tree> {
    let mut tree = Tree::default();
    let file = tree.add_file(root.to_path_buf());
    let module = tree.add_module(None, file);
    let mut queue = vec![Pending {
        file,
        module,
        owns_dir: true,
    }];
    while let Some(next) = queue.pop() {
        let relative = tree.files[next.file].clone();
        let path = src.join(&relative);
        let text = std::fs::read_to_string(&path).map_err(XtaskError::io("read", &path))?;
        let parsed = syn::parse_file(&text).map_err(|e| XtaskError::BadFile {
            path: path.clone(),
            message: format!("does not parse as Rust: {e}"),
        })?;
        let dir = if next.owns_dir {
            relative.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            relative.with_extension("")
        };
        for declared in collect_file(&mut tree, next.file, next.module, &parsed.items) {
            match find_module_file(src, &relative, &dir, &declared) {
                Some((found, owns_dir)) => {
                    let file = tree.add_file(found);
                    tree.modules[declared.module].file = file;
                    queue.push(Pending {
                        file,
                        module: declared.module,
                        owns_dir,
                    });
                }
                None => eprintln!(
                    "xtask circles: {}: `mod {};` has no file; skipped",
                    path.display(),
                    declared.name
                ),
            }
        }
    }
    Ok(tree)
}

/// The file of a `mod name;` declared in `file` (whose submodules live in
/// `dir`), relative to `src`, and whether it owns its directory.
fn find_module_file(
    src: &Path,
    file: &Path,
    dir: &Path,
    declared: &PendingMod,
) -> Option<(PathBuf, bool)> {
    let mut base = dir.to_path_buf();
    base.extend(&declared.inline_dirs);
    if let Some(path) = &declared.path_attr {
        let beside = if declared.inline_dirs.is_empty() {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            base
        };
        let candidate = beside.join(path);
        return src.join(&candidate).is_file().then_some((candidate, true));
    }
    [
        (base.join(format!("{}.rs", declared.name)), false),
        (base.join(&declared.name).join("mod.rs"), true),
    ]
    .into_iter()
    .find(|(candidate, _)| src.join(candidate).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn finds_roots_and_module_files_in_every_layout() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        write(
            src,
            &[
                (
                    "lib.rs",
                    "mod a; mod b; mod c { mod d; } #[path = \"other.rs\"] mod e;",
                ),
                ("a.rs", "mod a1;"),
                ("a/a1.rs", ""),
                ("b/mod.rs", "mod b1;"),
                ("b/b1.rs", ""),
                ("c/d.rs", ""),
                ("other.rs", ""),
                ("bin/tool.rs", "fn main() {}"),
                ("bin/big/main.rs", "fn main() {}"),
                ("bin/notes.txt", ""),
            ],
        );
        assert_eq!(
            crate_roots(src),
            [
                PathBuf::from("lib.rs"),
                PathBuf::from("bin/big/main.rs"),
                PathBuf::from("bin/tool.rs")
            ]
        );
        let tree = load_tree(src, Path::new("lib.rs")).unwrap();
        let mut files: Vec<String> = tree.files.iter().map(|f| f.display().to_string()).collect();
        files.sort();
        assert_eq!(
            files,
            [
                "a.rs", "a/a1.rs", "b/b1.rs", "b/mod.rs", "c/d.rs", "lib.rs", "other.rs"
            ]
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("lib.rs", "fn (")]);
        let error = load_tree(dir.path(), Path::new("lib.rs")).unwrap_err();
        assert!(error.to_string().contains("does not parse"), "{error}");
    }
}
