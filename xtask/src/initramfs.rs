//! The part of an initramfs both the test guest and the lab's L1 share:
//! busybox, `/init`, `/dev/console`, and a module closure with its load order.

use std::path::Path;

use crate::cpio::{Archive, Entry};
use crate::error::{Result, XtaskError};
use crate::modules::ModuleIndex;

/// Reads a module list (one name per line, `#` comments).
pub fn parse_module_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Starts an archive with busybox at `/bin/busybox`, `init` at `/init`,
/// `/dev/console`, and the closure of `modules` under
/// `/lib/modules/<release>/` with their load order in
/// `/etc/uvm/modules.order`. Returns the archive and the module count.
pub fn base(
    busybox: &Path,
    modules_dir: &Path,
    release: &str,
    modules: &[String],
    init: &str,
) -> Result<(Archive, usize)> {
    let mut archive = Archive::new();
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "mnt",
    ] {
        archive.dir(dir);
    }
    // The kernel opens /dev/console for /init's stdio before devtmpfs exists.
    archive.add("dev/console", Entry::CharDev { major: 5, minor: 1 });
    archive.file("init", init.as_bytes().to_vec(), 0o755);
    let busybox_bytes = std::fs::read(busybox).map_err(XtaskError::io("read", busybox))?;
    archive.file("bin/busybox", busybox_bytes, 0o755);
    archive.add(
        "bin/sh",
        Entry::Symlink {
            target: "busybox".into(),
        },
    );

    let index = ModuleIndex::scan(modules_dir)?;
    let order = index.closure(modules)?;
    let mut order_file = String::new();
    for relative in &order {
        let source = modules_dir.join(relative);
        let data = std::fs::read(&source).map_err(XtaskError::io("read module", &source))?;
        let inside = format!("{release}/{}", relative.display());
        archive.file(&format!("lib/modules/{inside}"), data, 0o644);
        order_file.push_str(&inside);
        order_file.push('\n');
    }
    archive.file("etc/uvm/modules.order", order_file.into_bytes(), 0o644);
    Ok((archive, order.len()))
}

/// Writes an archive to `path` atomically (temporary file, then rename).
pub fn write(archive: &Archive, path: &Path) -> Result<u64> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(XtaskError::io("create", &tmp))?;
    let mut out = std::io::BufWriter::new(file);
    let size = archive
        .write_to(&mut out)
        .map_err(XtaskError::io("write", &tmp))?;
    std::io::Write::flush(&mut out).map_err(XtaskError::io("write", &tmp))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(XtaskError::io("rename to", path))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists_skip_comments_and_blanks() {
        assert_eq!(
            parse_module_list("# header\nvirtio_pci\n\n  tun  # taps\n"),
            vec!["virtio_pci".to_owned(), "tun".to_owned()]
        );
    }

    #[test]
    fn shipped_module_lists_parse() {
        assert!(parse_module_list(crate::guest::MODULES).contains(&"virtio_blk".to_owned()));
        assert!(parse_module_list(crate::lab::MODULES).contains(&"kvm_amd".to_owned()));
    }
}
