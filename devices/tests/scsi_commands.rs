//! The SCSI disk emulation on its own: the command set a Linux initiator
//! uses, against real host files, and random CDBs that must never panic.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod fuzz_rng;
use fuzz_rng::Rng;
use std::io::Write;
use std::os::unix::fs::FileExt;

use uvm_devices::scsi::sense::{CHECK_CONDITION, GOOD, key};
use uvm_devices::scsi::{DiskImage, ImageKind, LunTable, ScsiError, ScsiLun, Sense};

const MIB: u64 = 1 << 20;

fn image(len: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(len).unwrap();
    f
}

fn disk(f: &tempfile::NamedTempFile, ro: bool) -> ScsiLun {
    ScsiLun::new(
        DiskImage::open(f.path(), ImageKind::Raw, ro).unwrap(),
        "SERIAL-0001",
    )
}

fn table(f: &tempfile::NamedTempFile, ro: bool) -> LunTable {
    let mut t = LunTable::new();
    t.insert(0, disk(f, ro)).unwrap();
    t
}

fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let a = alloc.to_be_bytes();
    [0x12, u8::from(evpd), page, a[0], a[1], 0]
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn inquiry_standard_and_vpd_pages() {
    let f = image(MIB);
    let t = table(&f, false);
    let std = t.execute(0, &inquiry(false, 0, 96), &[]);
    assert_eq!(std.status, GOOD);
    assert_eq!(std.data[0], 0x00, "direct-access device, connected");
    assert_eq!(std.data[2], 0x05, "SPC-3");
    assert_eq!(std.data[3] & 0x0f, 2, "response data format 2");
    assert_eq!(usize::from(std.data[4]) + 5, std.data.len());
    assert_eq!(&std.data[8..16], b"UVM     ");
    // Allocation length cuts the data.
    assert_eq!(t.execute(0, &inquiry(false, 0, 5), &[]).data.len(), 5);

    let pages = t.execute(0, &inquiry(true, 0x00, 255), &[]);
    assert_eq!(&pages.data[4..], &[0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
    let serial = t.execute(0, &inquiry(true, 0x80, 255), &[]);
    assert_eq!(serial.data[1], 0x80);
    assert_eq!(&serial.data[4..], b"SERIAL-0001");
    let id = t.execute(0, &inquiry(true, 0x83, 255), &[]);
    assert_eq!(id.data[4], 0x02, "ASCII code set");
    assert_eq!(id.data[5], 0x01, "T10 vendor id designator");
    assert_eq!(&id.data[8..16], b"UVM     ");
    assert_eq!(&id.data[16..27], b"SERIAL-0001");
    let bl = t.execute(0, &inquiry(true, 0xb0, 255), &[]);
    assert_eq!(u16::from_be_bytes([bl.data[2], bl.data[3]]), 0x3c);
    assert_eq!(&bl.data[8..12], &2048u32.to_be_bytes());
    let bc = t.execute(0, &inquiry(true, 0xb1, 255), &[]);
    assert_eq!(&bc.data[4..6], &1u16.to_be_bytes(), "non-rotating");
    assert!(t.execute(0, &inquiry(true, 0xb2, 255), &[]).is_good());
    let bad = t.execute(0, &inquiry(true, 0x89, 255), &[]);
    assert_eq!(bad.sense, Some(Sense::INVALID_FIELD));
    let bad = t.execute(0, &inquiry(false, 0x80, 255), &[]);
    assert_eq!(bad.sense, Some(Sense::INVALID_FIELD));
}

#[test]
fn read_capacity_of_a_1mib_file() {
    let f = image(MIB);
    let t = table(&f, false);
    let rc10 = t.execute(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert!(rc10.is_good());
    assert_eq!(&rc10.data, &[0, 0, 0x07, 0xff, 0, 0, 2, 0]);
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = 32;
    let rc16 = t.execute(0, &cdb, &[]);
    assert!(rc16.is_good());
    assert_eq!(rc16.data.len(), 32);
    assert_eq!(&rc16.data[0..8], &2047u64.to_be_bytes());
    assert_eq!(&rc16.data[8..12], &512u32.to_be_bytes());
    // Another SERVICE ACTION IN action is not implemented.
    cdb[1] = 0x12;
    assert_eq!(t.execute(0, &cdb, &[]).sense, Some(Sense::INVALID_OPCODE));
}

#[test]
fn write_and_read_round_trip_through_the_host_file() {
    let f = image(MIB);
    let t = table(&f, false);
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    let w = t.execute(0, &rw10(0x2a, 10, 4), &data);
    assert!(w.is_good(), "{w:?}");
    let mut on_disk = vec![0u8; 2048];
    f.as_file().read_exact_at(&mut on_disk, 10 * 512).unwrap();
    assert_eq!(on_disk, data);

    f.as_file()
        .write_all_at(b"host-written", 2000 * 512)
        .unwrap();
    let r = t.execute(0, &rw16(0x88, 2000, 1), &[]);
    assert!(r.is_good());
    assert_eq!(r.data.len(), 512);
    assert_eq!(&r.data[..12], b"host-written");
    let r = t.execute(0, &rw10(0x28, 10, 4), &[]);
    assert_eq!(r.data, data);

    let w16 = t.execute(0, &rw16(0x8a, 2047, 1), &[0xaa; 512]);
    assert!(w16.is_good());
    assert!(
        t.execute(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[])
            .is_good()
    );
    assert!(t.execute(0, &rw16(0x91, 0, 0), &[]).is_good());
    let mut last = [0u8; 512];
    f.as_file().read_exact_at(&mut last, 2047 * 512).unwrap();
    assert_eq!(last, [0xaa; 512]);

    // Zero-length transfers are no-ops.
    let r0 = t.execute(0, &rw10(0x28, 0, 0), &[]);
    assert!(r0.is_good() && r0.data.is_empty());
}

#[test]
fn out_of_range_lba_and_oversized_transfers() {
    let f = image(MIB);
    let t = table(&f, false);
    for cdb in [
        rw10(0x28, 2048, 1).to_vec(),
        rw10(0x28, 2047, 2).to_vec(),
        rw16(0x88, u64::MAX, 1).to_vec(),
        rw16(0x8a, u64::MAX - 1, 4).to_vec(),
    ] {
        let o = t.execute(0, &cdb, &[0; 4096]);
        assert_eq!(o.status, CHECK_CONDITION);
        assert_eq!(o.sense, Some(Sense::LBA_OUT_OF_RANGE), "{cdb:x?}");
    }
    let big = t.execute(0, &rw16(0x88, 0, 4096), &[]);
    assert_eq!(big.sense, Some(Sense::INVALID_FIELD));
}

#[test]
fn read_only_disk_refuses_writes_and_reports_wp() {
    let f = image(MIB);
    let ro = table(&f, true);
    let w = ro.execute(0, &rw10(0x2a, 0, 1), &[1; 512]);
    assert_eq!(w.status, CHECK_CONDITION);
    let s = w.sense.unwrap();
    assert_eq!((s.key, s.asc, s.ascq), (key::DATA_PROTECT, 0x27, 0x00));
    let mut first = [9u8; 512];
    f.as_file().read_exact_at(&mut first, 0).unwrap();
    assert_eq!(first, [0; 512], "nothing reached the file");
    assert!(ro.execute(0, &rw10(0x28, 0, 1), &[]).is_good());

    // MODE SENSE(6), all pages: WP in the device-specific parameter.
    let ms6 = ro.execute(0, &[0x1a, 0, 0x3f, 0, 255, 0], &[]);
    assert!(ms6.is_good());
    assert_eq!(ms6.data[2] & 0x80, 0x80);
    assert_eq!(usize::from(ms6.data[0]) + 1, ms6.data.len());
    // MODE SENSE(10), caching page.
    let ms10 = ro.execute(0, &[0x5a, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0], &[]);
    assert!(ms10.is_good());
    assert_eq!(ms10.data[3] & 0x80, 0x80);
    assert_eq!(&ms10.data[6..8], &[0, 0], "DBD: no block descriptor");
    assert_eq!(ms10.data[8], 0x08);
    assert_eq!(ms10.data[10] & 0x04, 0x04, "write cache enabled");

    let rw = table(&f, false);
    let ms6 = rw.execute(0, &[0x1a, 0, 0x0a, 0, 255, 0], &[]);
    assert_eq!(ms6.data[2] & 0x80, 0);
    assert_eq!(ms6.data[3], 8, "block descriptor present");
    assert_eq!(&ms6.data[4 + 1..4 + 4], &[0, 0x08, 0], "2048 blocks");
    assert_eq!(ms6.data[12], 0x0a, "control page");
    let saved = rw.execute(0, &[0x1a, 0, 0xc8, 0, 255, 0], &[]);
    assert_eq!(saved.sense, Some(Sense::SAVING_NOT_SUPPORTED));
}

#[test]
fn report_luns_follows_add_and_remove() {
    let f = image(MIB);
    let mut t = LunTable::new();
    let report = |t: &LunTable| -> Vec<u16> {
        let o = t.execute(7, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], &[]);
        assert!(o.is_good());
        let n = u32::from_be_bytes([o.data[0], o.data[1], o.data[2], o.data[3]]) as usize / 8;
        (0..n).map(|i| u16::from(o.data[8 + 8 * i + 1])).collect()
    };
    assert_eq!(report(&t), vec![0], "LUN 0 is always reported");
    t.insert(3, disk(&f, true)).unwrap();
    t.insert(5, disk(&f, true)).unwrap();
    assert_eq!(report(&t), vec![0, 3, 5]);
    assert!(matches!(
        t.insert(3, disk(&f, true)),
        Err(ScsiError::LunInUse(3))
    ));
    assert!(matches!(
        t.insert(64, disk(&f, true)),
        Err(ScsiError::LunOutOfRange { lun: 64, .. })
    ));
    t.remove(3).unwrap();
    assert_eq!(report(&t), vec![0, 5]);
    assert!(matches!(t.remove(3), Err(ScsiError::NoSuchLun(3))));
    // Too small an allocation length is refused.
    let o = t.execute(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], &[]);
    assert_eq!(o.sense, Some(Sense::INVALID_FIELD));
    // An absent LUN: INQUIRY says "not connected", others fail.
    let inq = t.execute(3, &inquiry(false, 0, 36), &[]);
    assert_eq!(inq.data[0], 0x7f);
    assert_eq!(
        t.execute(3, &rw10(0x28, 0, 1), &[]).sense,
        Some(Sense::LUN_NOT_SUPPORTED)
    );
}

#[test]
fn unknown_opcodes_and_simple_commands() {
    let f = image(MIB);
    let t = table(&f, false);
    for op in [0x04u8, 0x15, 0x55, 0x42, 0xa3, 0xc0, 0xff, 0x85] {
        let o = t.execute(0, &[op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(o.status, CHECK_CONDITION, "opcode {op:#x}");
        let s = o.sense.unwrap().to_fixed();
        assert_eq!(s[0], 0x70, "fixed format");
        assert_eq!((s[2], s[12], s[13]), (key::ILLEGAL_REQUEST, 0x20, 0));
    }
    assert!(t.execute(0, &[0; 6], &[]).is_good(), "TEST UNIT READY");
    assert!(
        t.execute(0, &[0x1b, 0, 0, 0, 1, 0], &[]).is_good(),
        "START STOP UNIT"
    );
    let rs = t.execute(0, &[0x03, 0, 0, 0, 252, 0], &[]);
    assert!(rs.is_good());
    assert_eq!(rs.data.len(), 18);
    assert_eq!((rs.data[0], rs.data[2]), (0x70, key::NO_SENSE));
    assert_eq!(
        t.execute(0, &[0x28, 0, 0], &[]).sense,
        Some(Sense::INVALID_FIELD)
    );
}

#[test]
fn formats_are_checked_not_probed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        DiskImage::open(dir.path(), ImageKind::Raw, true),
        Err(ScsiError::NotRegularFile(_))
    ));
    let f = image(MIB);
    assert!(matches!(
        DiskImage::open(f.path(), ImageKind::BlockDevice, true),
        Err(ScsiError::NotBlockDevice(_))
    ));
    let empty = image(100);
    assert!(matches!(
        DiskImage::open(empty.path(), ImageKind::Raw, true),
        Err(ScsiError::TooSmall(_))
    ));
    assert!(matches!(
        DiskImage::open(&dir.path().join("missing"), ImageKind::Raw, true),
        Err(ScsiError::Open { .. })
    ));
    // A qcow2 header in a raw image is just data.
    let mut q = tempfile::NamedTempFile::new().unwrap();
    q.write_all(b"QFI\xfb").unwrap();
    q.as_file().set_len(MIB).unwrap();
    let img = DiskImage::open(q.path(), ImageKind::Raw, true).unwrap();
    assert_eq!(img.blocks(), 2048);
    // A partial trailing block is not exposed.
    let odd = image(MIB + 100);
    assert_eq!(
        DiskImage::open(odd.path(), ImageKind::Raw, true)
            .unwrap()
            .blocks(),
        2048
    );
}

#[test]
fn random_cdbs_never_panic() {
    let f = image(MIB);
    let mut t = table(&f, false);
    t.insert(1, disk(&f, true)).unwrap();
    let known = [
        0x00u8, 0x03, 0x08, 0x0a, 0x12, 0x1a, 0x1b, 0x25, 0x28, 0x2a, 0x35, 0x5a, 0x88, 0x8a, 0x91,
        0x9e, 0xa0,
    ];
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let (mut good, mut check) = (0, 0);
    for _ in 0..5000 {
        let len = r.below(34) as usize;
        let mut cdb: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
        if let Some(op) = cdb.first_mut()
            && r.below(4) != 0
        {
            *op = known[r.below(known.len() as u64) as usize];
        }
        // Keep most transfers small so the loop stays fast.
        if cdb.len() >= 10 && r.below(3) != 0 {
            cdb[2..6].fill(0);
        }
        let lun = r.below(4) as u16;
        let data_out = vec![0x5au8; r.below(4096) as usize];
        let o = t.execute(lun, &cdb, &data_out);
        match o.status {
            GOOD => {
                good += 1;
                assert!(o.sense.is_none());
            }
            CHECK_CONDITION => {
                check += 1;
                assert!(o.sense.is_some());
                assert!(o.data.is_empty());
            }
            s => panic!("unexpected status {s:#x}"),
        }
        assert!(o.data.len() <= 1 << 20);
    }
    assert!(good > 100 && check > 100, "good {good} check {check}");
}
