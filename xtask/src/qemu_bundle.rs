//! `cargo xtask lab --with-qemu`: puts this host's `qemu-system-x86_64`, its
//! shared libraries (from `ldd`, at the paths the dynamic loader looks for
//! them) and the firmware `-M microvm` needs into the L1 initramfs, so that
//! QEMU can run on the L1's `/dev/kvm` next to backend-kvm.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::cpio::Archive;
use crate::error::{Result, XtaskError};

/// Where QEMU lands in the L1 (on `PATH`).
pub const QEMU_INSIDE: &str = "/usr/bin/qemu-system-x86_64";
/// The L1 directory passed to QEMU as `-L` (`UVM_QEMU_FIRMWARE`).
pub const FIRMWARE_INSIDE: &str = "/uvm/qemu/firmware";
/// Debian's QEMU data directory on the host.
pub const FIRMWARE_HOST: &str = "/usr/share/qemu";
/// The firmware files a microvm Linux boot reads, by the names QEMU asks
/// for: `bios-microvm.bin` is qboot (`qboot.rom`, a symlink in Debian),
/// `linuxboot_dma.bin` and `pvh.bin` are the option ROMs of `-kernel`.
pub const FIRMWARE: &[&str] = &["bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin"];

/// The absolute paths in `ldd` output: the libraries (`name => /path (addr)`)
/// and the dynamic loader (`/path (addr)`); the vDSO has none.
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            return Err(XtaskError::Other(format!("ldd: {line}")));
        }
        let target = match line.split_once("=>") {
            Some((_, right)) => right.trim(),
            None => line,
        };
        if let Some(path) = target
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            out.push(PathBuf::from(path));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    // fs::read follows symlinks: each library lands as a regular file.
    std::fs::read(path).map_err(XtaskError::io("read", path))
}

/// Adds the program `host` at `inside`, with the shared libraries `ldd`
/// lists for it; returns the bytes added.
pub fn add_program(archive: &mut Archive, host: &Path, inside: &str) -> Result<u64> {
    let ldd = cmd::require("ldd", "ldd comes with libc-bin")?;
    let text = cmd::output(Command::new(ldd).arg(host))?;
    let mut bytes = 0u64;
    for lib in parse_ldd(&text)? {
        let data = read(&lib)?;
        bytes += data.len() as u64;
        archive.file(&lib.to_string_lossy(), data, 0o755);
    }
    let data = read(host)?;
    bytes += data.len() as u64;
    archive.file(inside, data, 0o755);
    Ok(bytes)
}

/// Adds QEMU, its libraries and firmware to `archive`; returns the lines
/// `run.sh` should export (`UVM_QEMU`, `UVM_QEMU_FIRMWARE`) and the bytes added.
pub fn add(archive: &mut Archive, qemu: &Path) -> Result<(String, u64)> {
    let ldd = cmd::require("ldd", "ldd comes with libc-bin")?;
    let text = cmd::output(Command::new(ldd).arg(qemu))?;
    let mut bytes = 0u64;
    let mut add_file = |archive: &mut Archive, inside: &str, source: &Path, mode: u32| {
        let data = read(source)?;
        bytes += data.len() as u64;
        archive.file(inside, data, mode);
        Ok::<(), XtaskError>(())
    };
    for lib in parse_ldd(&text)? {
        add_file(archive, &lib.to_string_lossy(), &lib, 0o755)?;
    }
    add_file(archive, QEMU_INSIDE, qemu, 0o755)?;
    for name in FIRMWARE {
        let source = Path::new(FIRMWARE_HOST).join(name);
        add_file(
            archive,
            &format!("{FIRMWARE_INSIDE}/{name}"),
            &source,
            0o644,
        )?;
    }
    let env = format!("export UVM_QEMU={QEMU_INSIDE} UVM_QEMU_FIRMWARE={FIRMWARE_INSIDE}\n");
    Ok((env, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f00)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f01)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }
}
