//! `cargo xtask circles [CRATE_DIR ...]`: finds import circles between the
//! files of a crate.
//!
//! For each crate (default: [`DEFAULT_CRATES`]) it reads every crate root
//! under `src/` (`lib.rs`, `main.rs`, `bin/*`) and the files their `mod`
//! declarations reach, parsed with `syn`, and draws an edge from file A to
//! file B when code in A, outside test-only items (`#[cfg(test)]`), names an
//! item defined in B:
//!
//! - a `use` leaf (grouped, renamed, `as _`, `self` in a group): `crate::`,
//!   `super::`, `self::` and names bound in the module are resolved through
//!   the module tree, and imports and re-exports are followed to the file
//!   that defines the item. So `use super::X` from `virtio/device.rs` is an
//!   edge to `virtio/mod.rs` when mod.rs defines `X`, and to `device.rs`'s
//!   sibling that defines it when mod.rs only re-exports it;
//! - a re-export (`pub use`) is a pass-through: an edge from the
//!   re-exporting file only when its own code mentions the name too;
//! - a glob import (`use super::*`, `pub use fake::*`): an edge for every
//!   name the glob brings in (public ones, or private ones the importing
//!   module may see) that the file's code mentions as an identifier;
//! - a path of two or more segments written in code (`crate::vmm::VmmEvent::
//!   Guest`, `super::Slot::new()`, types in signatures), and inside macro
//!   arguments the paths that start with `crate`, `super` or `self`.
//!
//! A path that goes past an item (an enum variant, an associated item) is an
//! edge to the item's file. `mod x;` alone is no edge. Not seen: what
//! macros expand to (including `macro_rules!` macros used across files),
//! paths in attributes and doc links, paths in macro arguments that start
//! with a plain name, and `#[cfg]` other than test-only (both sides of a
//! platform `cfg` count). Names are kept in one namespace (a module and a
//! function of the same name in one module are both followed).
//!
//! Each circle is printed as `crate: a.rs -> b.rs -> a.rs (names: X; Y)`,
//! with the names each step imports (`;` between steps). Every edge that
//! lies on a circle is shown in the shortest circle through it. The command
//! exits 1 when it found a circle, 0 otherwise.

mod collect;
mod graph;
mod load;
mod resolve;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::build;
use crate::error::{Result, XtaskError};

/// The crates checked when none is named.
pub const DEFAULT_CRATES: [&str; 5] = [
    "backend-kvm",
    "devices",
    "backend-mock",
    "conformance",
    "uvm-api",
];

/// The usage line.
const USAGE: &str = "usage: cargo xtask circles [CRATE_DIR ...] (relative to the workspace root; \
                     default: backend-kvm devices backend-mock conformance uvm-api)";

/// What one crate's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateReport {
    /// How many source files were read.
    pub files: usize,
    /// The circles, files relative to `src/`.
    pub circles: Vec<graph::Circle<PathBuf>>,
}

/// Checks the crate in `dir` (its `src/`).
pub fn check_crate(dir: &Path) -> Result<CrateReport> {
    let src = dir.join("src");
    let roots = load::crate_roots(&src);
    if roots.is_empty() {
        return Err(XtaskError::Usage(format!(
            "{} has no src/lib.rs, src/main.rs or src/bin/",
            dir.display()
        )));
    }
    let mut files = BTreeSet::new();
    let mut edges: BTreeMap<(PathBuf, PathBuf), BTreeSet<String>> = BTreeMap::new();
    for root in roots {
        let tree = load::load_tree(&src, &root)?;
        files.extend(tree.files.iter().cloned());
        for (key, names) in resolve::edges(&tree) {
            edges.entry(key).or_default().extend(names);
        }
    }
    Ok(CrateReport {
        files: files.len(),
        circles: graph::circles(&edges),
    })
}

/// One circle as a line: `label: a.rs -> b.rs -> a.rs (names: X; Y)`.
pub fn format_circle(label: &str, circle: &graph::Circle<PathBuf>) -> String {
    let files: Vec<String> = circle
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let names: Vec<String> = circle
        .names
        .iter()
        .map(|n| n.iter().cloned().collect::<Vec<_>>().join(", "))
        .collect();
    format!(
        "{label}: {} (names: {})",
        files.join(" -> "),
        names.join("; ")
    )
}

/// Runs `cargo xtask circles`; returns 1 when a circle was found.
pub fn run(args: &[String]) -> Result<i32> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(0);
    }
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        return Err(XtaskError::Usage(format!(
            "unknown circles option {flag}; {USAGE}"
        )));
    }
    let crates: Vec<String> = if args.is_empty() {
        DEFAULT_CRATES.iter().map(|c| (*c).to_owned()).collect()
    } else {
        args.to_vec()
    };
    let root = build::workspace_root();
    let mut total = 0;
    for label in &crates {
        let report = check_crate(&root.join(label))?;
        for circle in &report.circles {
            println!("{}", format_circle(label, circle));
        }
        match report.circles.len() {
            0 => println!("{label}: no import circle ({} files)", report.files),
            n => println!("{label}: {n} import circle(s) ({} files)", report.files),
        }
        total += report.circles.len();
    }
    Ok(i32::from(total > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a crate of `files` (paths under `src/`) into a temp dir.
    fn crate_of(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("src").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn lines(files: &[(&str, &str)]) -> Vec<String> {
        let dir = crate_of(files);
        let report = check_crate(dir.path()).unwrap();
        report
            .circles
            .iter()
            .map(|c| format_circle("t", c))
            .collect()
    }

    #[test]
    fn a_circle_through_super() {
        let found = lines(&[
            ("lib.rs", "pub mod pci;"),
            ("pci/mod.rs", "mod config; mod function;"),
            (
                "pci/config.rs",
                "use super::function::BarInfo; pub enum BarKind { Io } pub fn f(_: BarInfo) {}",
            ),
            (
                "pci/function.rs",
                "use super::config::BarKind; pub struct BarInfo(BarKind);",
            ),
        ]);
        assert_eq!(
            found,
            ["t: pci/config.rs -> pci/function.rs -> pci/config.rs (names: BarInfo; BarKind)"]
        );
    }

    #[test]
    fn a_re_export_is_followed_to_its_definition_and_is_no_circle() {
        let files = [
            ("lib.rs", "pub mod virtio; pub use virtio::Handle;"),
            (
                "virtio/mod.rs",
                "mod device; pub use device::VirtioDevice; pub struct Handle;",
            ),
            (
                "virtio/device.rs",
                "use super::Handle; pub trait VirtioDevice { fn h(&self) -> Handle; }",
            ),
        ];
        assert!(lines(&files).is_empty());
        // A user of the re-export depends on device.rs, not on mod.rs.
        let dir = crate_of(&[
            ("lib.rs", "pub mod virtio; mod user;"),
            ("virtio/mod.rs", "mod device; pub use device::VirtioDevice;"),
            (
                "virtio/device.rs",
                "pub trait VirtioDevice {} pub fn g() { crate::user::helper() }",
            ),
            (
                "user.rs",
                "use crate::virtio::VirtioDevice; pub fn helper() {}",
            ),
        ]);
        let report = check_crate(dir.path()).unwrap();
        let found: Vec<String> = report
            .circles
            .iter()
            .map(|c| format_circle("t", c))
            .collect();
        assert_eq!(
            found,
            ["t: user.rs -> virtio/device.rs -> user.rs (names: VirtioDevice; helper)"]
        );
    }

    #[test]
    fn a_test_module_is_ignored() {
        let found = lines(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::B; pub struct A(B);"),
            (
                "b.rs",
                "pub struct B; #[cfg(test)] mod tests { use crate::a::A; } \
                 #[cfg(test)] fn helper() -> crate::a::A { todo!() }",
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn full_paths_in_code_and_macros_count() {
        let found = lines(&[
            ("lib.rs", "mod vcpu; mod vmm;"),
            (
                "vmm.rs",
                "use crate::vcpu::Vcpu; pub enum VmmEvent { Guest } fn f(_: Vcpu) {}",
            ),
            (
                "vcpu.rs",
                "pub struct Vcpu; fn g() { let _ = vec![crate::vmm::VmmEvent::Guest]; }",
            ),
        ]);
        assert_eq!(
            found,
            ["t: vcpu.rs -> vmm.rs -> vcpu.rs (names: VmmEvent; Vcpu)"]
        );
    }

    #[test]
    fn globs_count_the_names_the_file_mentions() {
        let files = [
            ("lib.rs", "pub mod fake; pub use fake::*;"),
            (
                "fake/mod.rs",
                "mod core; mod vm; pub use core::Core; pub use vm::Vm; pub(crate) fn clock() {}",
            ),
            ("fake/core.rs", "use super::*; pub struct Core(Vm);"),
            ("fake/vm.rs", "pub struct Vm; fn f() { super::clock() }"),
        ];
        // core.rs mentions Vm only: an edge to vm.rs, none to mod.rs.
        assert!(lines(&files).is_empty());
        let mut with_circle = files;
        with_circle[3] = ("fake/vm.rs", "pub struct Vm; fn f() { crate::Core::new() }");
        assert_eq!(
            lines(&with_circle),
            ["t: fake/core.rs -> fake/vm.rs -> fake/core.rs (names: Vm; Core)"]
        );
    }

    #[test]
    fn private_items_are_not_seen_through_a_glob_from_outside() {
        let found = lines(&[
            ("lib.rs", "mod a; mod b;"),
            // `secret` here is a local variable, not b.rs's private fn.
            ("a.rs", "use crate::b::*; pub fn f() { let secret = 1; }"),
            ("b.rs", "fn secret() {} pub fn g() { let _ = crate::a::f; }"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn every_root_of_a_crate_is_read() {
        let dir = crate_of(&[
            ("lib.rs", "pub mod x;"),
            ("x.rs", "pub struct X;"),
            ("bin/tool/main.rs", "mod a; mod b;"),
            ("bin/tool/a.rs", "use super::b::B; pub struct A;"),
            ("bin/tool/b.rs", "pub struct B(super::a::A);"),
        ]);
        let report = check_crate(dir.path()).unwrap();
        assert_eq!(report.files, 5);
        assert_eq!(
            report.circles[0].files,
            [
                PathBuf::from("bin/tool/a.rs"),
                PathBuf::from("bin/tool/b.rs"),
                PathBuf::from("bin/tool/a.rs")
            ]
        );
    }

    #[test]
    fn a_directory_without_sources_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_crate(dir.path()).is_err());
        assert!(run(&["--bogus".into()]).is_err());
    }
}
