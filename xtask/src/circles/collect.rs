//! Reads one parsed file into the [`Tree`]: the items and submodules each
//! module defines, its `use` leaves, the paths its code writes, and the
//! identifiers it mentions. Test-only items (`#[cfg(test)]`) are skipped.

use proc_macro2::{TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, ItemUse, Meta, UseTree, Visibility};

use super::tree::{FileId, ModId, RefKind, Reference, Target, Tree};

/// A `mod name;` declaration whose file is still to be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMod {
    /// The module it declares (already in the tree, without items yet).
    pub module: ModId,
    /// Its name.
    pub name: String,
    /// Its `#[path = "..."]`, if any.
    pub path_attr: Option<String>,
    /// The inline modules between the file's own module and the
    /// declaration (`mod a { mod b; }` gives `["a"]`).
    pub inline_dirs: Vec<String>,
}

/// Adds the items of `file`, the body of `module`, to `tree`; returns its
/// `mod name;` declarations.
pub fn collect_file(
    tree: &mut Tree,
    file: FileId,
    module: ModId,
    items: &[Item],
) -> Vec<PendingMod> {
    let mut pending = Vec::new();
    collect_items(tree, file, module, items, &[], &mut pending);
    pending
}

fn collect_items(
    tree: &mut Tree,
    file: FileId,
    module: ModId,
    items: &[Item],
    inline_dirs: &[String],
    pending: &mut Vec<PendingMod>,
) {
    for item in items {
        if is_test_only(item_attrs(item)) {
            continue;
        }
        match item {
            Item::Mod(m) => {
                let name = m.ident.to_string();
                let child = tree.add_module(Some(module), file);
                tree.bind(module, &name, Target::Module(child), is_public(&m.vis));
                match &m.content {
                    Some((_, inner)) => {
                        let mut dirs = inline_dirs.to_vec();
                        dirs.push(name);
                        collect_items(tree, file, child, inner, &dirs, pending);
                    }
                    None => pending.push(PendingMod {
                        module: child,
                        name,
                        path_attr: path_attr(&m.attrs),
                        inline_dirs: inline_dirs.to_vec(),
                    }),
                }
            }
            Item::Use(u) => add_use(tree, file, module, u),
            Item::ExternCrate(_) => {}
            // A `macro_rules!` body is expanded where the macro is used.
            Item::Macro(m) if m.ident.is_some() => {}
            other => {
                if let Some((name, public)) = defined_name(other) {
                    tree.bind(module, &name, Target::Item(file), public);
                }
                CodeVisitor { tree, file, module }.visit_item(other);
            }
        }
    }
}

/// The name and visibility an item defines in its module's namespace.
fn defined_name(item: &Item) -> Option<(String, bool)> {
    let (ident, vis) = match item {
        Item::Const(i) => (&i.ident, &i.vis),
        Item::Enum(i) => (&i.ident, &i.vis),
        Item::Fn(i) => (&i.sig.ident, &i.vis),
        Item::Static(i) => (&i.ident, &i.vis),
        Item::Struct(i) => (&i.ident, &i.vis),
        Item::Trait(i) => (&i.ident, &i.vis),
        Item::TraitAlias(i) => (&i.ident, &i.vis),
        Item::Type(i) => (&i.ident, &i.vis),
        Item::Union(i) => (&i.ident, &i.vis),
        _ => return None,
    };
    Some((ident.to_string(), is_public(vis)))
}

fn is_public(vis: &Visibility) -> bool {
    !matches!(vis, Visibility::Inherited)
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Whether the attributes compile the item for tests only: `#[cfg(test)]`,
/// or an `all(..)` with `test` in it, or an `any(..)` of such.
pub fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args::<Meta>().is_ok_and(|m| requires_test(&m))
    })
}

fn requires_test(meta: &Meta) -> bool {
    let nested = |list: &syn::MetaList| {
        list.parse_args_with(Punctuated::<Meta, syn::Token![,]>::parse_terminated)
            .map(|p| p.into_iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    match meta {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => nested(list).iter().any(requires_test),
        Meta::List(list) if list.path.is_ident("any") => {
            let options = nested(list);
            !options.is_empty() && options.iter().all(requires_test)
        }
        _ => false,
    }
}

fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// One leaf of a `use` tree.
enum Leaf {
    /// `path` bound as `name` (`None` for `as _`).
    Name {
        path: Vec<String>,
        name: Option<String>,
    },
    /// `path::*`.
    Glob(Vec<String>),
}

fn use_leaf(prefix: &[String], ident: &syn::Ident, rename: &syn::Ident) -> Leaf {
    let mut path = prefix.to_vec();
    if ident != "self" {
        path.push(ident.to_string());
    }
    let name = if rename == "_" {
        None
    } else if rename == "self" {
        path.last().cloned()
    } else {
        Some(rename.to_string())
    };
    Leaf::Name { path, name }
}

fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<Leaf>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(use_leaf(prefix, &n.ident, &n.ident)),
        UseTree::Rename(r) => out.push(use_leaf(prefix, &r.ident, &r.rename)),
        UseTree::Glob(_) => out.push(Leaf::Glob(prefix.clone())),
        UseTree::Group(g) => {
            for item in &g.items {
                flatten(item, prefix, out);
            }
        }
    }
}

/// Binds the leaves of a `use` item in `module` and records them.
fn add_use(tree: &mut Tree, file: FileId, module: ModId, item: &ItemUse) {
    if item.leading_colon.is_some() {
        return; // `use ::name`: another crate.
    }
    let public = is_public(&item.vis);
    let mut leaves = Vec::new();
    flatten(&item.tree, &mut Vec::new(), &mut leaves);
    for leaf in leaves {
        let (path, kind, bound_as) = match leaf {
            Leaf::Glob(path) => {
                tree.modules[module].globs.push((path.clone(), public));
                (path, RefKind::Glob, None)
            }
            Leaf::Name { path, name } => {
                if let Some(name) = &name {
                    tree.bind(module, name, Target::Import(path.clone()), public);
                }
                let kind = if public && name.is_some() {
                    RefKind::ReExport
                } else {
                    RefKind::Use
                };
                (path, kind, name)
            }
        };
        if !path.is_empty() {
            tree.references.push(Reference {
                file,
                module,
                path,
                kind,
                bound_as,
            });
        }
    }
}

/// Walks the code of an item: records paths of two or more segments,
/// nested `use` items, and the identifiers mentioned (macro arguments
/// included, where paths starting with `crate`, `super` or `self` are
/// recognised too). Skips attributes, test-only nested items and
/// `macro_rules!` bodies.
struct CodeVisitor<'t> {
    tree: &'t mut Tree,
    file: FileId,
    module: ModId,
}

impl CodeVisitor<'_> {
    fn reference(&mut self, path: Vec<String>) {
        self.tree.references.push(Reference {
            file: self.file,
            module: self.module,
            path,
            kind: RefKind::Code,
            bound_as: None,
        });
    }

    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let ident_at = |i: usize| match tokens.get(i) {
            Some(TokenTree::Ident(ident)) => Some(ident.to_string()),
            _ => None,
        };
        let colons_at = |i: usize| {
            matches!(
                (tokens.get(i), tokens.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && b.as_char() == ':'
            )
        };
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident) => {
                    let first = ident.to_string();
                    self.tree.mentions[self.file].insert(first.clone());
                    let starts_path = matches!(first.as_str(), "crate" | "super" | "self");
                    let follows_colons = i >= 2 && colons_at(i - 2);
                    if starts_path && !follows_colons {
                        let mut path = vec![first];
                        let mut j = i + 1;
                        while colons_at(j) {
                            let Some(next) = ident_at(j + 2) else { break };
                            path.push(next);
                            j += 3;
                        }
                        if path.len() >= 2 {
                            self.reference(path);
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for CodeVisitor<'_> {
    fn visit_attribute(&mut self, _: &'ast Attribute) {}

    fn visit_ident(&mut self, ident: &'ast proc_macro2::Ident) {
        self.tree.mentions[self.file].insert(ident.to_string());
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if is_test_only(item_attrs(item)) {
            return;
        }
        match item {
            Item::Macro(m) if m.ident.is_some() => {}
            _ => visit::visit_item(self, item),
        }
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        add_use(self.tree, self.file, self.module, item);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.scan_tokens(mac.tokens.clone());
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() >= 2 {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.reference(segments);
        }
        visit::visit_path(self, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(source: &str) -> (Tree, Vec<PendingMod>) {
        let file: syn::File = syn::parse_str(source).unwrap();
        let mut tree = Tree::default();
        let f = tree.add_file("lib.rs".into());
        let root = tree.add_module(None, f);
        let pending = collect_file(&mut tree, f, root, &file.items);
        (tree, pending)
    }

    fn paths(tree: &Tree, kind: RefKind) -> Vec<String> {
        tree.references
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.path.join("::"))
            .collect()
    }

    #[test]
    fn flattens_grouped_renamed_and_glob_uses() {
        let (tree, _) = collect(
            "use crate::a::{b, c::{d, e as f}, g::{self}, h as _};
             pub use super::x::*;
             pub use self::y::Z;",
        );
        assert_eq!(
            paths(&tree, RefKind::Use),
            [
                "crate::a::b",
                "crate::a::c::d",
                "crate::a::c::e",
                "crate::a::g",
                "crate::a::h"
            ]
        );
        assert_eq!(paths(&tree, RefKind::Glob), ["super::x"]);
        assert_eq!(paths(&tree, RefKind::ReExport), ["self::y::Z"]);
        let names: Vec<&String> = tree.modules[0].bindings.keys().collect();
        assert_eq!(names, ["Z", "b", "d", "f", "g"]);
        assert_eq!(
            tree.modules[0].globs,
            [(vec!["super".into(), "x".into()], true)]
        );
    }

    #[test]
    fn skips_test_modules_and_test_only_items() {
        let (tree, pending) = collect(
            "mod a; #[cfg(test)] mod tests { use crate::b::X; }
             #[cfg(all(test, feature = \"x\"))] use crate::c::Y;
             #[cfg(not(test))] use crate::d::Z;
             #[cfg(test)] mod t2;",
        );
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].name, "a");
        assert_eq!(paths(&tree, RefKind::Use), ["crate::d::Z"]);
    }

    #[test]
    fn records_code_paths_and_macro_paths_and_mentions() {
        let (tree, _) = collect(
            "fn f() -> crate::e::R {
                 let x = crate::vmm::VmmEvent::Guest;
                 assert!(matches!(x, super::k::L));
                 T::new();
                 use crate::inner::Q;
             }
             macro_rules! m { () => { $crate::not::Seen } }",
        );
        assert_eq!(
            paths(&tree, RefKind::Code),
            [
                "crate::e::R",
                "crate::vmm::VmmEvent::Guest",
                "super::k::L",
                "T::new"
            ]
        );
        assert_eq!(paths(&tree, RefKind::Use), ["crate::inner::Q"]);
        let mentions = &tree.mentions[0];
        assert!(mentions.contains("VmmEvent") && mentions.contains("L"));
        assert!(!mentions.contains("Q"), "use items are not mentions");
        assert!(!mentions.contains("Seen"));
    }

    #[test]
    fn inline_modules_nest_and_bind() {
        let (tree, pending) = collect("pub mod a { pub struct S; mod b; } fn g() {}");
        assert_eq!(tree.modules.len(), 3);
        assert_eq!(pending[0].inline_dirs, ["a"]);
        let a = &tree.modules[0].bindings["a"][0];
        assert_eq!(a.target, Target::Module(1));
        assert!(a.public);
        assert_eq!(tree.modules[1].bindings["S"][0].target, Target::Item(0));
        assert!(!tree.modules[0].bindings["g"][0].public);
    }
}
