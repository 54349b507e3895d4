//! The ACPI PCI hotplug register block driven the way the DSDT's methods
//! drive it, and its AML checked byte by byte and inside a whole DSDT.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use parking_lot::Mutex;
use uvm_devices::acpi::pci_hotplug::{
    DOWN_OFFSET, EJECT_OFFSET, HotplugError, PCIHP_BASE, PCIHP_GPE, PCIHP_LEN, PciHotplug,
    UP_OFFSET, hotplug_aml,
};
use uvm_devices::acpi::tables::{self, AcpiConfig, AcpiImage, layout};
use uvm_devices::bus::{Bus, BusDevice};

fn device() -> (PciHotplug, Arc<Mutex<Vec<u8>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let dev = PciHotplug::new(Arc::new(move |slot| sink.lock().push(slot)));
    (dev, seen)
}

fn read32(dev: &mut PciHotplug, offset: u16) -> u32 {
    let mut b = [0u8; 4];
    dev.read(u64::from(offset), &mut b);
    u32::from_le_bytes(b)
}

fn write32(dev: &mut PciHotplug, offset: u16, value: u32) {
    dev.write(u64::from(offset), &value.to_le_bytes());
}

#[test]
fn up_reports_each_add_once_and_is_cleared_by_the_read() {
    let (mut dev, _) = device();
    assert_eq!(read32(&mut dev, UP_OFFSET), 0);
    dev.announce_add(1).unwrap();
    dev.announce_add(5).unwrap();
    dev.announce_add(31).unwrap();
    dev.announce_add(5).unwrap();
    assert_eq!(read32(&mut dev, UP_OFFSET), (1 << 1) | (1 << 5) | (1 << 31));
    assert_eq!(read32(&mut dev, UP_OFFSET), 0, "the read cleared UP");
    // An add after the read is reported by the next read.
    dev.announce_add(7).unwrap();
    assert_eq!(read32(&mut dev, UP_OFFSET), 1 << 7);
    // Adds do not show in DOWN.
    assert_eq!(read32(&mut dev, DOWN_OFFSET), 0);
}

#[test]
fn narrow_reads_of_up_clear_only_the_bytes_returned() {
    let (mut dev, _) = device();
    for slot in [2, 9, 17, 30] {
        dev.announce_add(slot).unwrap();
    }
    let mut b = [0u8; 1];
    dev.read(u64::from(UP_OFFSET), &mut b);
    assert_eq!(b, [1 << 2]);
    // Two bytes across bits 8..24.
    let mut w = [0u8; 2];
    dev.read(u64::from(UP_OFFSET) + 1, &mut w);
    assert_eq!(u16::from_le_bytes(w), (1 << (9 - 8)) | (1 << (17 - 8)));
    // Slot 30 is still pending; the slots read are not.
    assert_eq!(read32(&mut dev, UP_OFFSET), 1 << 30);
    // An unaligned read across UP and DOWN: UP bytes 2-3, DOWN bytes 0-1.
    dev.announce_add(24).unwrap();
    dev.request_removal(3).unwrap();
    let mut x = [0u8; 4];
    dev.read(u64::from(UP_OFFSET) + 2, &mut x);
    assert_eq!(x, [0, 1, 1 << 3, 0]);
    assert_eq!(read32(&mut dev, UP_OFFSET), 0);
    assert_eq!(read32(&mut dev, DOWN_OFFSET), 1 << 3);
}

#[test]
fn down_persists_until_the_guest_ejects() {
    let (mut dev, seen) = device();
    dev.request_removal(4).unwrap();
    dev.request_removal(12).unwrap();
    assert_eq!(dev.removals_pending(), (1 << 4) | (1 << 12));
    for _ in 0..3 {
        assert_eq!(read32(&mut dev, DOWN_OFFSET), (1 << 4) | (1 << 12));
    }
    // Writing DOWN or UP does nothing.
    write32(&mut dev, DOWN_OFFSET, 0);
    write32(&mut dev, UP_OFFSET, u32::MAX);
    assert_eq!(read32(&mut dev, DOWN_OFFSET), (1 << 4) | (1 << 12));
    assert_eq!(read32(&mut dev, UP_OFFSET), 0);
    assert!(seen.lock().is_empty());

    // _EJ0 of slot 12 writes its bit.
    write32(&mut dev, EJECT_OFFSET, 1 << 12);
    assert_eq!(*seen.lock(), vec![12]);
    assert_eq!(read32(&mut dev, DOWN_OFFSET), 1 << 4);
    assert_eq!(dev.removals_pending(), 1 << 4);
    assert_eq!(read32(&mut dev, EJECT_OFFSET), 0, "EJECT reads as 0");
}

#[test]
fn eject_calls_the_sink_for_each_slot_written() {
    let (mut dev, seen) = device();
    dev.request_removal(3).unwrap();
    dev.request_removal(31).unwrap();
    // Several slots at once, one of them (6) with no removal pending, and
    // bit 0 (the host bridge), which is ignored.
    write32(&mut dev, EJECT_OFFSET, (1 << 31) | (1 << 6) | (1 << 3) | 1);
    assert_eq!(*seen.lock(), vec![3, 6, 31]);
    assert_eq!(dev.removals_pending(), 0);
    // Writing 0 ejects nothing.
    write32(&mut dev, EJECT_OFFSET, 0);
    assert_eq!(seen.lock().len(), 3);
    // A repeated eject is passed on too.
    write32(&mut dev, EJECT_OFFSET, 1 << 3);
    assert_eq!(*seen.lock(), vec![3, 6, 31, 3]);
}

#[test]
fn partial_writes_to_eject_address_the_bytes_written() {
    let (mut dev, seen) = device();
    dev.request_removal(9).unwrap();
    dev.request_removal(10).unwrap();
    dev.request_removal(25).unwrap();
    // One byte at EJECT+1 covers slots 8..16.
    dev.write(u64::from(EJECT_OFFSET) + 1, &[1 << (9 - 8)]);
    assert_eq!(*seen.lock(), vec![9]);
    assert_eq!(dev.removals_pending(), (1 << 10) | (1 << 25));
    // Two bytes at EJECT+3 : byte 3 of EJECT (slots 24..32), then a port past the block.
    dev.write(u64::from(EJECT_OFFSET) + 3, &[1 << (25 - 24), 0xff]);
    assert_eq!(*seen.lock(), vec![9, 25]);
    // A word straddling DOWN and EJECT: only the EJECT byte counts.
    dev.write(u64::from(EJECT_OFFSET) - 1, &[0xff, 1 << 7]);
    assert_eq!(*seen.lock(), vec![9, 25, 7]);
    assert_eq!(dev.removals_pending(), 1 << 10);
}

#[test]
fn slot_zero_and_slots_past_31_are_refused() {
    let (mut dev, _) = device();
    assert_eq!(dev.announce_add(0), Err(HotplugError::InvalidSlot(0)));
    assert_eq!(dev.announce_add(32), Err(HotplugError::InvalidSlot(32)));
    assert_eq!(dev.request_removal(0), Err(HotplugError::InvalidSlot(0)));
    assert_eq!(dev.request_removal(32), Err(HotplugError::InvalidSlot(32)));
    assert_eq!(
        dev.request_removal(200),
        Err(HotplugError::InvalidSlot(200))
    );
    assert_eq!(read32(&mut dev, UP_OFFSET), 0);
    assert_eq!(dev.removals_pending(), 0);
    assert_eq!(dev.announce_add(31), Ok(()));
    assert_eq!(dev.request_removal(1), Ok(()));
}

#[test]
fn the_block_works_through_the_port_bus() {
    let (dev, seen) = device();
    let dev = Arc::new(Mutex::new(dev));
    let mut bus = Bus::new();
    bus.insert(dev.clone(), u64::from(PCIHP_BASE), u64::from(PCIHP_LEN))
        .unwrap();
    dev.lock().announce_add(2).unwrap();
    dev.lock().request_removal(3).unwrap();
    let base = u64::from(PCIHP_BASE);
    let mut b = [0u8; 4];
    assert!(bus.read(base, &mut b));
    assert_eq!(u32::from_le_bytes(b), 1 << 2);
    assert!(bus.read(base + 4, &mut b));
    assert_eq!(u32::from_le_bytes(b), 1 << 3);
    assert!(bus.write(base + 8, &(1u32 << 3).to_le_bytes()));
    assert_eq!(*seen.lock(), vec![3]);
    assert!(
        !bus.read(base + u64::from(PCIHP_LEN), &mut b),
        "block ends at LEN"
    );
}

// ---------------------------------------------------------------------------
// AML

/// Decodes a PkgLength at `aml[0..]`: (length value, bytes it takes).
fn pkg_length(aml: &[u8]) -> (usize, usize) {
    let extra = usize::from(aml[0] >> 6);
    if extra == 0 {
        return (usize::from(aml[0] & 0x3f), 1);
    }
    let mut len = usize::from(aml[0] & 0x0f);
    for i in 0..extra {
        len |= usize::from(aml[1 + i]) << (4 + 8 * i);
    }
    (len, 1 + extra)
}

/// Splits a list of objects (as `hotplug_aml`'s root-bridge AML is) into
/// (kind, name, bytes); panics on anything else or on a length mismatch.
fn objects(aml: &[u8]) -> Vec<(&'static str, String, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < aml.len() {
        let (kind, op_len) = match aml[pos..] {
            [0x5b, 0x80, ..] => ("region", 2),
            [0x5b, 0x81, ..] => ("field", 2),
            [0x5b, 0x82, ..] => ("device", 2),
            [0x14, ..] => ("method", 1),
            [0x10, ..] => ("scope", 1),
            _ => panic!("unexpected opcode {:#x} at {pos}", aml[pos]),
        };
        let (end, name_at) = if kind == "region" {
            // Name, space, Word offset, Byte length.
            let name_at = pos + op_len;
            (name_at + 4 + 1 + 3 + 2, name_at)
        } else {
            let (len, len_bytes) = pkg_length(&aml[pos + op_len..]);
            (pos + op_len + len, pos + op_len + len_bytes)
        };
        let name_at = name_at + usize::from(aml[name_at] == b'\\');
        let name = String::from_utf8(aml[name_at..name_at + 4].to_vec()).unwrap();
        assert!(end <= aml.len(), "{kind} {name} runs past the end");
        out.push((kind, name, &aml[pos..end]));
        pos = end;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn root_bridge_aml_has_the_region_fields_slots_and_scan_method() {
    let (root, _) = hotplug_aml(&[0x1f, 2, 1, 2, 0, 32]);
    let objs = objects(&root);
    let names: Vec<(&str, &str)> = objs.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("region", "PCST"),
            ("field", "PCST"),
            ("device", "S01_"),
            ("device", "S02_"),
            ("device", "S1F_"),
            ("method", "PCNT"),
        ],
        "sorted, deduplicated, slots 0 and 32 left out"
    );

    // OperationRegion (PCST, SystemIO, 0xae00, 0x0c)
    let mut region = vec![0x5b, 0x80];
    region.extend_from_slice(b"PCST");
    region.extend_from_slice(&[0x01, 0x0b, 0x00, 0xae, 0x0a, 0x0c]);
    assert_eq!(objs[0].2, region.as_slice());

    // Field (PCST, DWordAcc, NoLock, WriteAsZeros) { PCIU,32, PCID,32, B0EJ,32 }
    let field = objs[1].2;
    assert_eq!(field[3..8], *b"PCST\x43");
    assert_eq!(field[8..], *b"PCIU\x20PCID\x20B0EJ\x20");

    // Device (S02) { _ADR = 0x00020000, _SUN = 2, _EJ0 (1, Serialized) { Store (4, B0EJ) } }
    let s02 = objs[3].2;
    assert!(contains(s02, b"\x08_ADR\x0c\x00\x00\x02\x00"));
    assert!(contains(s02, b"\x08_SUN\x0a\x02"));
    assert!(contains(s02, b"_EJ0\x09\x70\x0a\x04B0EJ"));
    // Slot 31: _ADR 0x001f0000, bit 0x80000000.
    let s1f = objs[4].2;
    assert!(contains(s1f, b"\x08_ADR\x0c\x00\x00\x1f\x00"));
    assert!(contains(s1f, b"\x70\x0c\x00\x00\x00\x80B0EJ"));

    // Method (PCNT, 0, Serialized): Local0 = PCIU, Local1 = PCID, then per slot
    // If (And (Local0, bit)) { Notify (Sxx, 1) } If (And (Local1, bit)) { Notify (Sxx, 3) }
    let pcnt = objs[5].2;
    let (_, len_bytes) = pkg_length(&pcnt[1..]);
    let body = &pcnt[1 + len_bytes..];
    assert_eq!(body[..5], *b"PCNT\x08");
    assert_eq!(body[5..17], *b"\x70PCIU\x60\x70PCID\x61");
    assert!(contains(body, b"\x7b\x60\x0a\x04\x00\x86S02_\x01"));
    assert!(contains(body, b"\x7b\x61\x0a\x04\x00\x86S02_\x0a\x03"));
    assert!(contains(
        body,
        b"\x7b\x60\x0c\x00\x00\x00\x80\x00\x86S1F_\x01"
    ));
    assert!(contains(
        body,
        b"\x7b\x61\x0c\x00\x00\x00\x80\x00\x86S1F_\x0a\x03"
    ));
    // Each check is an If (0xa0) around its And.
    assert_eq!(
        body.windows(2)
            .filter(|w| w[0] == 0xa0 && w[1] < 0x40)
            .count(),
        6
    );
}

#[test]
fn top_level_aml_is_the_gpe_method() {
    assert_eq!(PCIHP_GPE, 1);
    let (_, top) = hotplug_aml(&[1]);
    let objs = objects(&top);
    assert_eq!(objs.len(), 1);
    assert_eq!((objs[0].0, objs[0].1.as_str()), ("scope", "_GPE"));
    assert!(contains(&top, b"\\_GPE\x14"));
    // Method (_E01, 0, NotSerialized) { \_SB.PCI0.PCNT () }
    assert!(contains(&top, b"_E01\x00\\\x2f\x03_SB_PCI0PCNT"));
    assert!(top.ends_with(b"_E01\x00\\\x2f\x03_SB_PCI0PCNT"));
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The table at guest address `addr`, its length and checksum checked.
fn table<'a>(img: &'a AcpiImage, addr: u64, sig: &[u8; 4]) -> &'a [u8] {
    let off = usize::try_from(addr - img.base).unwrap();
    assert_eq!(&img.bytes[off..off + 4], sig);
    let len = u32_at(&img.bytes, off + 4) as usize;
    assert!(off + len <= img.bytes.len(), "table runs past the image");
    let t = &img.bytes[off..off + len];
    let sum = t.iter().fold(0u8, |a, x| a.wrapping_add(*x));
    assert_eq!(sum, 0, "{} checksum", String::from_utf8_lossy(sig));
    t
}

/// The DSDT of a machine with hotplug slots `slots`, found through RSDP,
/// XSDT and FADT like the guest finds it.
fn dsdt_with_hotplug(slots: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (root, top) = hotplug_aml(slots);
    let mut config = AcpiConfig::new(2, (0xc000_0000, 0x3000_0000));
    config.root_bridge_aml = root.clone();
    config.top_level_aml = top.clone();
    let img = tables::build(&config, 0xe0000, 0x20000).unwrap();
    let xsdt = table(&img, u64_at(&img.bytes, 24), b"XSDT");
    let fadt = table(&img, u64_at(xsdt, 36), b"FACP");
    let dsdt = table(&img, u64_at(fadt, layout::FADT_X_DSDT), b"DSDT").to_vec();
    (dsdt, root, top)
}

#[test]
fn dsdt_with_hotplug_has_a_valid_checksum_and_the_aml_in_place() {
    let slots: Vec<u8> = (1..32).collect();
    let (dsdt, root, top) = dsdt_with_hotplug(&slots);
    assert_eq!(u32_at(&dsdt, 4) as usize, dsdt.len());
    for name in [
        &b"_E01"[..],
        b"PCNT",
        b"PCST",
        b"PCIU",
        b"PCID",
        b"B0EJ",
        b"S01_",
        b"S1F_",
    ] {
        assert!(
            contains(&dsdt, name),
            "{} missing",
            String::from_utf8_lossy(name)
        );
    }
    // The top-level AML closes the table.
    assert!(dsdt.ends_with(&top));
    // The root-bridge AML is the end of Device (PCI0): find the device and
    // check its PkgLength covers exactly up to the end of that AML.
    let pci0 = (36..dsdt.len() - 8)
        .find(|&p| {
            dsdt[p..p + 2] == [0x5b, 0x82] && {
                let (_, n) = pkg_length(&dsdt[p + 2..]);
                dsdt[p + 2 + n..p + 6 + n] == *b"PCI0"
            }
        })
        .expect("Device (PCI0)");
    let (len, _) = pkg_length(&dsdt[pci0 + 2..]);
    let end = pci0 + 2 + len;
    assert_eq!(&dsdt[end - root.len()..end], root.as_slice());
    // And the \_SB scope ends there too; then comes the top-level AML.
    assert_eq!(end, dsdt.len() - top.len());
}

// ---------------------------------------------------------------------------
// iasl and acpiexec (optional: they run when acpica-tools is installed)

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("-v").output().is_ok()
}

/// Disassembles `dsdt` with `iasl -d` into `dir`; returns the ASL.
fn disassemble(dir: &Path, name: &str, dsdt: &[u8]) -> (PathBuf, String) {
    let aml = dir.join(format!("{name}.aml"));
    std::fs::write(&aml, dsdt).unwrap();
    let (ok, text) = run(Command::new("iasl").current_dir(dir).arg("-d").arg(&aml));
    println!("iasl -d {name}:\n{text}");
    assert!(ok, "iasl -d failed:\n{text}");
    assert!(!text.contains("Error"), "iasl -d reported errors:\n{text}");
    let dsl = dir.join(format!("{name}.dsl"));
    let asl = std::fs::read_to_string(&dsl).unwrap();
    (dsl, asl)
}

/// Compiles ASL to AML: no errors allowed. Returns the number of warnings.
fn compile(dir: &Path, dsl: &Path, output_prefix: &str) -> usize {
    let (ok, text) = run(Command::new("iasl")
        .current_dir(dir)
        .arg("-p")
        .arg(dir.join(output_prefix))
        .arg(dsl));
    println!("iasl {}:\n{text}", dsl.display());
    assert!(ok, "iasl could not compile {}:\n{text}", dsl.display());
    assert!(text.contains(" 0 Errors,"), "iasl reported errors:\n{text}");
    // "Compilation successful. 0 Errors, N Warnings, ..."
    let after = text.split(" 0 Errors,").nth(1).unwrap();
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no warning count in:\n{text}"))
}

/// Disassembles the DSDT with `iasl -d` and compiles the result back; both
/// must succeed without errors, the ASL must read as intended, and the
/// hotplug AML must not add warnings to those of a DSDT without it.
#[test]
fn iasl_disassembles_and_recompiles_the_dsdt() {
    if !installed("iasl") {
        println!("SKIPPED: iasl not installed (apt-get install acpica-tools)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (dsdt, _, _) = dsdt_with_hotplug(&[1, 2]);
    let (dsl_path, dsl) = disassemble(dir.path(), "dsdt", &dsdt);
    println!("{dsl}");
    for expected in [
        "OperationRegion (PCST, SystemIO, 0xAE00, 0x0C)",
        "Field (PCST, DWordAcc, NoLock, WriteAsZeros)",
        "PCIU,   32",
        "PCID,   32",
        "B0EJ,   32",
        "Device (S01)",
        "Device (S02)",
        "Name (_ADR, 0x00020000)",
        "Name (_SUN, 0x02)",
        "Method (_EJ0, 1, Serialized)",
        "B0EJ = 0x04",
        "Method (PCNT, 0, Serialized)",
        "Local0 = PCIU",
        "Local1 = PCID",
        "If ((Local0 & 0x04))",
        "Notify (S02, One) // Device Check",
        "If ((Local1 & 0x04))",
        "Notify (S02, 0x03) // Eject Request",
        "Scope (\\_GPE)",
        "Method (_E01, 0, NotSerialized)",
        "\\_SB.PCI0.PCNT ()",
    ] {
        assert!(dsl.contains(expected), "{expected:?} not in:\n{dsl}");
    }
    let warnings = compile(dir.path(), &dsl_path, "recompiled");

    let plain = tables::build(
        &AcpiConfig::new(2, (0xc000_0000, 0x3000_0000)),
        0xe0000,
        0x20000,
    )
    .unwrap();
    let xsdt = table(&plain, u64_at(&plain.bytes, 24), b"XSDT");
    let fadt = table(&plain, u64_at(xsdt, 36), b"FACP");
    let plain_dsdt = table(&plain, u64_at(fadt, layout::FADT_X_DSDT), b"DSDT").to_vec();
    let (plain_dsl, _) = disassemble(dir.path(), "plain", &plain_dsdt);
    let plain_warnings = compile(dir.path(), &plain_dsl, "plain-recompiled");
    assert_eq!(
        warnings, plain_warnings,
        "the hotplug AML adds iasl warnings"
    );
}

/// Runs the DSDT in ACPICA's interpreter (`acpiexec`) with a test SSDT that
/// stores values into PCIU/PCID (acpiexec simulates the I/O region), runs
/// `\_GPE._E01` and `_EJ0`, and checks the notifications and the EJECT write.
#[test]
fn acpiexec_runs_the_gpe_and_eject_methods() {
    if !installed("iasl") || !installed("acpiexec") {
        println!("SKIPPED: iasl/acpiexec not installed (apt-get install acpica-tools)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (dsdt, _, _) = dsdt_with_hotplug(&[1, 2, 0x1f]);
    std::fs::write(dir.path().join("dsdt.aml"), &dsdt).unwrap();
    let ssdt = r#"DefinitionBlock ("", "SSDT", 2, "TEST", "HPTEST", 1)
{
    External (\_SB.PCI0.PCIU, FieldUnitObj)
    External (\_SB.PCI0.PCID, FieldUnitObj)
    External (\_SB.PCI0.B0EJ, FieldUnitObj)
    External (\_SB.PCI0.S1F._EJ0, MethodObj)
    External (\_GPE._E01, MethodObj)
    Method (TGPE, 0)
    {
        \_SB.PCI0.PCIU = 0x80000004
        \_SB.PCI0.PCID = 0x02
        \_GPE._E01 ()
    }
    Method (TEJ0, 0)
    {
        \_SB.PCI0.S1F._EJ0 (One)
        Return (\_SB.PCI0.B0EJ)
    }
}
"#;
    let ssdt_path = dir.path().join("test.asl");
    std::fs::write(&ssdt_path, ssdt).unwrap();
    compile(dir.path(), &ssdt_path, "test");
    let (ok, text) = run(Command::new("acpiexec")
        .current_dir(dir.path())
        .arg("-b")
        .arg("execute TGPE; execute TEJ0")
        .arg("dsdt.aml")
        .arg("test.aml"));
    println!("acpiexec:\n{text}");
    assert!(ok, "acpiexec failed:\n{text}");
    // acpiexec dispatches notifications from a queue: compare them sorted.
    let mut notifies: Vec<(String, String)> = text
        .lines()
        .filter(|l| l.contains("Notify on ["))
        .map(|l| {
            let name = l.split('[').nth(1).unwrap().split(']').next().unwrap();
            let value = l.split("Value ").nth(1).unwrap().split_whitespace();
            (name.to_string(), value.take(1).collect())
        })
        .collect();
    notifies.sort();
    assert_eq!(
        notifies,
        vec![
            ("S01_".to_string(), "0x03".to_string()),
            ("S02_".to_string(), "0x01".to_string()),
            ("S1F_".to_string(), "0x01".to_string()),
        ],
        "notifications in:\n{text}"
    );
    assert!(
        text.contains("[Integer] = 0000000080000000"),
        "_EJ0 of slot 31 did not write its bit:\n{text}"
    );
}
