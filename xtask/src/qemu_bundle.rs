//! `cargo xtask lab --with-qemu`: puts this host's `qemu-system-x86_64`, its
//! shared libraries (from `ldd`, at the paths the dynamic loader looks for
//! them) and the firmware `-M microvm` and `-M pc` need into the L1
//! initramfs, so that QEMU can run on the L1's `/dev/kvm` next to
//! backend-kvm.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::cpio::Archive;
use crate::error::{Result, XtaskError};

/// Where QEMU lands in the L1 (on `PATH`).
pub const QEMU_INSIDE: &str = "/usr/bin/qemu-system-x86_64";
/// The L1 directory passed to QEMU as `-L` (`UVM_QEMU_FIRMWARE`).
pub const FIRMWARE_INSIDE: &str = "/uvm/qemu/firmware";
/// The host directories firmware is looked up in, in order: Debian's QEMU
/// data directory, and SeaBIOS's (package `seabios`, which Debian's QEMU
/// also searches).
pub const FIRMWARE_HOST: &[&str] = &["/usr/share/qemu", "/usr/share/seabios"];
/// The firmware files a Linux boot with `-kernel` reads, by the names QEMU
/// asks for. `-M microvm` (boot-bench): `bios-microvm.bin` is qboot
/// (`qboot.rom`, a symlink in Debian), `linuxboot_dma.bin` and `pvh.bin`
/// are the option ROMs of `-kernel`. `-M pc` (hotplug-bench, for its ACPI
/// PCI hotplug): SeaBIOS as `bios-256k.bin`, `linuxboot_dma.bin`, and
/// `kvmvapic.bin` (the TPR-patching option ROM pc loads). Hot-added NICs
/// are given `romfile=""`, so no NIC option ROM is needed.
pub const FIRMWARE: &[&str] = &[
    "bios-microvm.bin",
    "linuxboot_dma.bin",
    "pvh.bin",
    "bios-256k.bin",
    "kvmvapic.bin",
];

/// The first of `dirs` holding `name` (symlinks followed when read).
pub fn find_firmware(dirs: &[&str], name: &str) -> Result<PathBuf> {
    dirs.iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .ok_or_else(|| {
            XtaskError::Other(format!(
                "QEMU firmware {name} is in none of {} (apt-get install qemu-system-x86 seabios)",
                dirs.join(", ")
            ))
        })
}

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
        let source = find_firmware(FIRMWARE_HOST, name)?;
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

    #[test]
    fn finds_firmware_in_the_first_directory_that_has_it() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("x.bin"), b"a").unwrap();
        std::fs::write(b.path().join("x.bin"), b"b").unwrap();
        std::fs::write(b.path().join("y.bin"), b"b").unwrap();
        let (da, db) = (a.path().to_str().unwrap(), b.path().to_str().unwrap());
        assert_eq!(
            find_firmware(&[da, db], "x.bin").unwrap(),
            a.path().join("x.bin")
        );
        assert_eq!(
            find_firmware(&[da, db], "y.bin").unwrap(),
            b.path().join("y.bin")
        );
        let err = find_firmware(&[da, db], "z.bin").unwrap_err().to_string();
        assert!(err.contains("z.bin"), "{err}");
    }
}
