//! Static builds of this workspace's binaries (for guests and the lab).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Result, XtaskError};

/// The target triple static builds use. Naming it explicitly keeps the
/// `crt-static` flag away from build scripts and proc macros.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The target directory of static builds, apart from the normal one so the
/// two builds do not invalidate each other.
pub fn static_target_dir() -> PathBuf {
    workspace_root().join("target/static")
}

/// Builds binary `bin` (of `package`, if given) statically in release mode
/// and returns its path.
pub fn build_static(package: Option<&str>, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("-C target-feature=+crt-static");
    let target_dir = static_target_dir();
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .env("RUSTFLAGS", rustflags)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .args(["--bin", bin]);
    if let Some(package) = package {
        command.args(["--package", package]);
    }
    eprintln!("xtask: building {bin} (static): {}", cmd::display(&command));
    cmd::run(&mut command)?;
    let path = target_dir.join(TARGET).join("release").join(bin);
    check_static(&path)?;
    Ok(path)
}

/// Whether an ELF image asks for a dynamic loader (has a `PT_INTERP` header).
pub fn has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 {
        return None;
    }
    let read_u16 = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let phentsize = usize::from(read_u16(0x36)?);
    let phnum = usize::from(read_u16(0x38)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if p_type == 3 {
            return Some(true);
        }
    }
    Some(false)
}

/// Fails unless `path` is a statically linked ELF executable.
pub fn check_static(path: &Path) -> Result<()> {
    let elf = std::fs::read(path).map_err(XtaskError::io("read", path))?;
    match has_interpreter(&elf) {
        Some(false) => Ok(()),
        Some(true) => Err(XtaskError::BadFile {
            path: path.to_path_buf(),
            message: "is dynamically linked (has an ELF interpreter); it cannot run in a \
                      busybox initramfs: build it with RUSTFLAGS=\"-C target-feature=+crt-static\" \
                      and an explicit --target"
                .into(),
        }),
        None => Err(XtaskError::BadFile {
            path: path.to_path_buf(),
            message: "is not a 64-bit ELF executable".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_interpreters() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are built normally, hence dynamically linked.
        assert_eq!(has_interpreter(&me), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
    }
}
