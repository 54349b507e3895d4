//! Kernel module closure: reads the `depends=` and `softdep=` fields of each
//! module's ELF `.modinfo` section (what `depmod` reads), and orders a set of
//! modules so that every module comes after its dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Result, XtaskError};

/// Module names use `_`; file names may use `-` (`kvm-amd.ko` is `kvm_amd`).
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// The contents of the named section of a 64-bit little-endian ELF file.
pub fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let shoff = u64_at(elf, 0x28)?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e)?);
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab_at = header(shstrndx)?;
    let strtab = elf.get(u64_at(elf, strtab_at + 0x18)?..)?;
    for i in 0..shnum {
        let at = header(i)?;
        let name_off = usize::try_from(u32_at(elf, at)?).ok()?;
        let name = strtab.get(name_off..)?;
        let name = &name[..name.iter().position(|b| *b == 0)?];
        if name == wanted.as_bytes() {
            let offset = u64_at(elf, at + 0x18)?;
            let size = u64_at(elf, at + 0x20)?;
            return elf.get(offset..offset.checked_add(size)?);
        }
    }
    None
}

/// The module names a module needs loaded first: `depends=` plus the
/// `pre:` part of any `softdep=`.
pub fn dependencies(modinfo: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for field in modinfo.split(|b| *b == 0) {
        let field = String::from_utf8_lossy(field);
        if let Some(list) = field.strip_prefix("depends=") {
            out.extend(list.split(',').filter(|d| !d.is_empty()).map(normalize));
        } else if let Some(soft) = field.strip_prefix("softdep=") {
            let pre = soft
                .split_whitespace()
                .skip_while(|w| *w != "pre:")
                .skip(1)
                .take_while(|w| !w.ends_with(':'));
            out.extend(pre.map(normalize));
        }
    }
    out
}

/// The `.ko` files of a modules tree, by module name.
#[derive(Debug)]
pub struct ModuleIndex {
    base: PathBuf,
    by_name: BTreeMap<String, PathBuf>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(XtaskError::io("read directory", dir))?;
    for entry in entries {
        let path = entry.map_err(XtaskError::io("read directory", dir))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(())
}

impl ModuleIndex {
    /// Indexes `lib/modules/<release>` (uncompressed `.ko` files, as in
    /// Debian 12's kernels; compressed modules are reported as missing).
    pub fn scan(base: &Path) -> Result<Self> {
        let mut files = Vec::new();
        walk(base, &mut files)?;
        let by_name = files
            .into_iter()
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_owned();
                Some((normalize(&stem), p))
            })
            .collect();
        Ok(Self {
            base: base.to_path_buf(),
            by_name,
        })
    }

    /// The modules to load for `wanted`, dependencies first, as paths
    /// relative to the modules directory. A wanted module that does not
    /// exist is an error (it may be built in: drop it from the list).
    pub fn closure(&self, wanted: &[String]) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            self.visit(
                &normalize(name),
                &mut done,
                &mut BTreeSet::new(),
                &mut order,
            )?;
        }
        order
            .into_iter()
            .map(|p: PathBuf| {
                p.strip_prefix(&self.base)
                    .map(Path::to_path_buf)
                    .map_err(|_| {
                        XtaskError::Other(format!(
                            "{} is outside {}",
                            p.display(),
                            self.base.display()
                        ))
                    })
            })
            .collect()
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        visiting: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if done.contains(name) || visiting.contains(name) {
            return Ok(());
        }
        let path = self.by_name.get(name).ok_or_else(|| {
            XtaskError::Other(format!(
                "module {name} is not in {} (built in, or misspelt?)",
                self.base.display()
            ))
        })?;
        let elf = std::fs::read(path).map_err(XtaskError::io("read module", path))?;
        let modinfo = elf_section(&elf, ".modinfo").ok_or_else(|| XtaskError::BadFile {
            path: path.clone(),
            message: "no .modinfo section (not an uncompressed 64-bit module?)".into(),
        })?;
        visiting.insert(name.to_owned());
        for dep in dependencies(modinfo) {
            // A soft dependency may be built in; hard ones must exist.
            if self.by_name.contains_key(&dep) {
                self.visit(&dep, done, visiting, order)?;
            }
        }
        visiting.remove(name);
        done.insert(name.to_owned());
        order.push(path.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a `.shstrtab` and a `.modinfo` section.
    pub(crate) fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        let strtab_off = elf.len();
        elf.extend_from_slice(shstrtab);
        let modinfo_off = elf.len();
        elf.extend_from_slice(modinfo);
        let shoff = elf.len();
        let section = |name: u32, offset: usize, size: usize| {
            let mut sh = vec![0u8; 64];
            sh[0..4].copy_from_slice(&name.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            sh
        };
        let null = section(0, 0, 0);
        let strtab = section(1, strtab_off, shstrtab.len());
        let info = section(11, modinfo_off, modinfo.len());
        elf.extend(null);
        elf.extend(strtab);
        elf.extend(info);
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_modinfo_dependencies() {
        let elf =
            fake_module(b"license=GPL\0depends=virtio,virtio-ring\0softdep=pre: crc32c post: x\0");
        let info = elf_section(&elf, ".modinfo").unwrap();
        assert_eq!(dependencies(info), vec!["virtio", "virtio_ring", "crc32c"]);
        assert!(elf_section(&elf, ".nope").is_none());
        assert!(elf_section(b"not elf", ".modinfo").is_none());
    }

    #[test]
    fn orders_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&kernel).unwrap();
        for (file, info) in [
            ("virtio_blk.ko", &b"depends=virtio,virtio_ring\0"[..]),
            ("virtio.ko", b"depends=\0"),
            ("virtio_ring.ko", b"depends=virtio\0"),
            ("kvm-amd.ko", b"depends=kvm\0softdep=pre: builtin_thing\0"),
            ("kvm.ko", b"depends=\0"),
        ] {
            std::fs::write(kernel.join(file), fake_module(info)).unwrap();
        }
        let index = ModuleIndex::scan(dir.path()).unwrap();
        let order = index
            .closure(&["virtio_blk".into(), "kvm_amd".into(), "virtio".into()])
            .unwrap();
        let names: Vec<_> = order
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "virtio.ko",
                "virtio_ring.ko",
                "virtio_blk.ko",
                "kvm.ko",
                "kvm-amd.ko"
            ]
        );
        assert!(order[0].starts_with("kernel/drivers"));
        assert!(index.closure(&["nope".into()]).is_err());
    }
}
