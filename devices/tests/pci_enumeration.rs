//! The root bus driven like a guest kernel drives it: through ports
//! 0xcf8/0xcfc and through ECAM.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use uvm_devices::bus::{Bus, BusDevice};
use uvm_devices::pci::{
    BarInfo, BarKind, BarRegion, ConfigSpace, ECAM_SIZE, PciBarWindow, PciCam, PciEcam, PciError,
    PciFunction, PciHeader, PciRoot, SharedFunction,
};
use uvm_devices::quiesce::{Pausable, PauseError};
use uvm_devices::snapshot::Snapshottable;

const WINDOW: u64 = 0xc000_0000;
const WINDOW_SIZE: u64 = 0x1000_0000;
const ECAM_BASE: u64 = 0xb000_0000;

/// A function with a 64-bit 16 KiB BAR 0 and a 32-bit 4 KiB BAR 2 backed by RAM.
struct RamFunction {
    config: ConfigSpace,
    bar0: Vec<u8>,
    bar2: Vec<u8>,
    /// Pause state as the test sees it: shared, so it is readable while the
    /// root holds the function.
    paused: Arc<AtomicBool>,
    /// Whether a pause fails (a backend that does not stop).
    refuse_pause: bool,
}

impl RamFunction {
    fn new(device_id: u16) -> Self {
        let mut config = ConfigSpace::new(&PciHeader {
            vendor_id: 0x1af4,
            device_id,
            class: 0xff,
            ..Default::default()
        });
        config.add_bar(0, 0x4000, BarKind::Memory64, false).unwrap();
        config.add_bar(2, 0x1000, BarKind::Memory32, false).unwrap();
        config.set_interrupt_pin(1);
        RamFunction {
            config,
            bar0: vec![0; 0x4000],
            bar2: vec![0; 0x1000],
            paused: Arc::new(AtomicBool::new(false)),
            refuse_pause: false,
        }
    }
}

impl Pausable for RamFunction {
    fn pause(&mut self) -> Result<(), PauseError> {
        if self.refuse_pause {
            return Err(PauseError::Backend {
                device: "ram".into(),
                action: "stop its rings",
                detail: "refused".into(),
            });
        }
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn resume(&mut self) -> Result<(), PauseError> {
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Snapshottable for RamFunction {}

impl PciFunction for RamFunction {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset.into(), data);
    }
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset.into(), data);
    }
    fn bars(&self) -> Vec<BarInfo> {
        self.config.bars()
    }
    fn set_bar_address(&mut self, index: u8, address: u64) {
        self.config.set_bar_address(index.into(), address);
    }
    fn mapped_bars(&self) -> Vec<BarRegion> {
        self.config.mapped_bars()
    }
    fn bar_read(&mut self, index: u8, offset: u64, data: &mut [u8]) {
        let mem = if index == 0 { &self.bar0 } else { &self.bar2 };
        let o = offset as usize;
        data.copy_from_slice(&mem[o..o + data.len()]);
    }
    fn bar_write(&mut self, index: u8, offset: u64, data: &[u8]) {
        let mem = if index == 0 {
            &mut self.bar0
        } else {
            &mut self.bar2
        };
        let o = offset as usize;
        mem[o..o + data.len()].copy_from_slice(data);
    }
}

struct Machine {
    root: Arc<Mutex<PciRoot>>,
    pio: Bus,
    mmio: Bus,
}

impl Machine {
    fn new() -> Self {
        let root = Arc::new(Mutex::new(PciRoot::new(
            0x8086,
            0x29c0,
            WINDOW,
            WINDOW_SIZE,
        )));
        let mut pio = Bus::new();
        pio.insert(Arc::new(Mutex::new(PciCam::new(root.clone()))), 0xcf8, 8)
            .unwrap();
        let mut mmio = Bus::new();
        mmio.insert(
            Arc::new(Mutex::new(PciEcam::new(root.clone()))),
            ECAM_BASE,
            ECAM_SIZE,
        )
        .unwrap();
        mmio.insert(
            Arc::new(Mutex::new(PciBarWindow::new(root.clone()))),
            WINDOW,
            WINDOW_SIZE,
        )
        .unwrap();
        Machine { root, pio, mmio }
    }

    fn cf8(dev: u8, func: u8, reg: u8) -> u32 {
        0x8000_0000 | (u32::from(dev) << 11) | (u32::from(func) << 8) | u32::from(reg & 0xfc)
    }

    fn cam_read32(&self, dev: u8, reg: u8) -> u32 {
        self.pio.write(0xcf8, &Self::cf8(dev, 0, reg).to_le_bytes());
        let mut d = [0u8; 4];
        self.pio.read(0xcfc, &mut d);
        u32::from_le_bytes(d)
    }

    fn cam_write32(&self, dev: u8, reg: u8, v: u32) {
        self.pio.write(0xcf8, &Self::cf8(dev, 0, reg).to_le_bytes());
        self.pio.write(0xcfc, &v.to_le_bytes());
    }

    fn ecam_read32(&self, dev: u8, reg: u64) -> u32 {
        let mut d = [0u8; 4];
        self.mmio
            .read(ECAM_BASE + (u64::from(dev) << 15) + reg, &mut d);
        u32::from_le_bytes(d)
    }

    fn add(&self, slot: Option<u8>, device_id: u16) -> Result<u8, PciError> {
        let f: SharedFunction = Arc::new(Mutex::new(RamFunction::new(device_id)));
        self.root.lock().add_function(slot, f)
    }
}

#[test]
fn guest_style_enumeration_through_cam() {
    let m = Machine::new();
    assert_eq!(m.add(None, 0x1041).unwrap(), 1);
    assert_eq!(m.add(Some(5), 0x1043).unwrap(), 5);

    // Scan bus 0 like pci_scan_bus: vendor id, all ones for empty slots.
    let mut found = Vec::new();
    for dev in 0..32u8 {
        let id = m.cam_read32(dev, 0);
        if id & 0xffff != 0xffff {
            found.push((dev, id));
        }
    }
    assert_eq!(
        found,
        vec![(0, 0x29c0_8086), (1, 0x1041_1af4), (5, 0x1043_1af4)]
    );
    // Host bridge class.
    assert_eq!(m.cam_read32(0, 8) >> 16, 0x0600);
    // Header type 0, single function: function 1 is absent.
    assert_eq!((m.cam_read32(1, 0x0c) >> 16) & 0xff, 0);
    m.pio.write(0xcf8, &Machine::cf8(1, 1, 0).to_le_bytes());
    let mut d = [0u8; 4];
    m.pio.read(0xcfc, &mut d);
    assert_eq!(d, [0xff; 4]);

    // Size BARs of slot 1 like __pci_read_base: save, write ones, read, restore.
    let mut sizes = Vec::new();
    let mut reg = 0x10u8;
    while reg < 0x28 {
        let orig = m.cam_read32(1, reg);
        m.cam_write32(1, reg, 0xffff_ffff);
        let mask = m.cam_read32(1, reg);
        m.cam_write32(1, reg, orig);
        if mask == 0 {
            reg += 4;
            continue;
        }
        if mask & 0b110 == 0b100 {
            let orig_hi = m.cam_read32(1, reg + 4);
            m.cam_write32(1, reg + 4, 0xffff_ffff);
            let hi = m.cam_read32(1, reg + 4);
            m.cam_write32(1, reg + 4, orig_hi);
            let full = (u64::from(hi) << 32) | u64::from(mask & !0xf);
            sizes.push((reg, (!full).wrapping_add(1), orig));
            reg += 8;
        } else {
            sizes.push((reg, u64::from(!(mask & !0xf)).wrapping_add(1), orig));
            reg += 4;
        }
    }
    assert_eq!(sizes.len(), 2);
    assert_eq!((sizes[0].0, sizes[0].1), (0x10, 0x4000));
    assert_eq!((sizes[1].0, sizes[1].1), (0x18, 0x1000));
    // Firmware-assigned addresses are inside the window and aligned.
    for (_, size, orig) in &sizes {
        let a = u64::from(orig & !0xf);
        assert!((WINDOW..WINDOW + WINDOW_SIZE).contains(&a));
        assert_eq!(a % size, 0);
    }

    // Reprogram BAR0 elsewhere in the window, enable memory, use the BAR.
    let new_bar0 = WINDOW + 0x80_0000;
    m.cam_write32(1, 0x10, new_bar0 as u32);
    m.cam_write32(1, 0x14, 0);
    let mut b = [0u8; 4];
    assert!(m.mmio.read(new_bar0, &mut b)); // window answers...
    assert_eq!(b, [0xff; 4]); // ...but decoding is off
    let cmd = m.cam_read32(1, 4);
    m.cam_write32(1, 4, cmd | 0x6);
    m.mmio.write(new_bar0 + 0x10, &[1, 2, 3, 4]);
    m.mmio.read(new_bar0 + 0x10, &mut b);
    assert_eq!(b, [1, 2, 3, 4]);
    assert_eq!(
        m.root.lock().mapped_bars(1)[0],
        BarRegion {
            index: 0,
            address: new_bar0,
            size: 0x4000
        }
    );
    // An access straddling the end of the BAR is not decoded.
    let mut q = [0u8; 8];
    m.mmio.read(new_bar0 + 0x3ffc, &mut q);
    assert_eq!(q, [0xff; 8]);

    // Interrupt pin and writable line.
    let int = m.cam_read32(1, 0x3c);
    assert_eq!((int >> 8) & 0xff, 1);
    m.cam_write32(1, 0x3c, 0xffff_ff0b);
    assert_eq!(m.cam_read32(1, 0x3c) & 0xffff, 0x010b);
}

#[test]
fn ecam_sees_the_same_functions() {
    let m = Machine::new();
    m.add(Some(3), 0x1042).unwrap();
    assert_eq!(m.ecam_read32(3, 0), 0x1042_1af4);
    assert_eq!(m.ecam_read32(2, 0), 0xffff_ffff);
    // Extended space of a present function reads zero (no extended caps).
    assert_eq!(m.ecam_read32(3, 0x100), 0);
    // Word and byte reads at offsets.
    let mut w = [0u8; 2];
    m.mmio.read(ECAM_BASE + (3 << 15) + 2, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x1042);
    let mut byte = [0u8; 1];
    m.mmio.read(ECAM_BASE + (3 << 15) + 1, &mut byte);
    assert_eq!(byte[0], 0x1a);
    // A write through ECAM is visible through CAM.
    m.mmio.write(ECAM_BASE + (3 << 15) + 0x3c, &[0x0a]);
    assert_eq!(m.cam_read32(3, 0x3c) & 0xff, 0x0a);
}

#[test]
fn hostile_config_accesses() {
    let m = Machine::new();
    m.add(Some(1), 0x1041).unwrap();
    // Data window with the enable bit clear reads all ones.
    m.pio.write(0xcf8, &0x0000_0800u32.to_le_bytes());
    let mut d = [0u8; 4];
    m.pio.read(0xcfc, &mut d);
    assert_eq!(d, [0xff; 4]);
    // Bus 1 does not exist.
    m.pio
        .write(0xcf8, &(0x8001_0000u32 | (1 << 11)).to_le_bytes());
    m.pio.read(0xcfc, &mut d);
    assert_eq!(d, [0xff; 4]);
    // Byte and word reads inside the data window.
    m.pio.write(0xcf8, &Machine::cf8(1, 0, 0).to_le_bytes());
    let mut b = [0u8; 1];
    m.pio.read(0xcfe, &mut b);
    assert_eq!(b[0], 0x41);
    let mut w = [0u8; 2];
    m.pio.read(0xcfe, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x1041);
    // Unaligned word and 3-byte accesses are refused.
    m.pio.read(0xcfd, &mut w);
    assert_eq!(w, [0xff; 2]);
    let mut three = [0u8; 3];
    m.pio.read(0xcfc, &mut three);
    assert_eq!(three, [0xff; 3]);
    m.pio.write(0xcfd, &[0, 0]);
    // Read-only ids ignore writes.
    m.cam_write32(1, 0, 0);
    assert_eq!(m.cam_read32(1, 0), 0x1041_1af4);
    // Address register reads back; partial writes to it are ignored.
    let mut a = [0u8; 4];
    m.pio.read(0xcf8, &mut a);
    assert_eq!(u32::from_le_bytes(a), Machine::cf8(1, 0, 0));
    m.pio.write(0xcfb, &[0x01]);
    m.pio.read(0xcf8, &mut a);
    assert_eq!(u32::from_le_bytes(a), Machine::cf8(1, 0, 0));
    // ECAM: unaligned, odd-sized and 8-byte accesses read all ones.
    let mut e = [0u8; 4];
    m.mmio.read(ECAM_BASE + (1 << 15) + 1, &mut e);
    assert_eq!(e, [0xff; 4]);
    let mut e8 = [0u8; 8];
    m.mmio.read(ECAM_BASE + (1 << 15), &mut e8);
    assert_eq!(e8, [0xff; 8]);
    m.mmio.write(ECAM_BASE + (1 << 15) + 0x3d, &[1, 2]);
    // Writes to absent functions and BAR-window holes are harmless.
    m.cam_write32(9, 0x10, 0xffff_ffff);
    m.mmio.write(WINDOW + 0x123, &[1]);
    let mut h = [0u8; 1];
    m.mmio.read(WINDOW + 0x123, &mut h);
    assert_eq!(h, [0xff]);
    // A device-level out-of-range access does not reach anything.
    let mut cam = PciCam::new(m.root.clone());
    cam.write(8, &[0; 4]);
    cam.read(100, &mut d);
    assert_eq!(d, [0xff; 4]);
}

#[test]
fn hotplug_add_and_remove_reuse_bars() {
    let m = Machine::new();
    let s1 = m.add(None, 0x1041).unwrap();
    let s2 = m.add(None, 0x1042).unwrap();
    assert_eq!((s1, s2), (1, 2));
    let bar_of = |slot: u8| m.cam_read32(slot, 0x10) & !0xf;
    let first = bar_of(2);
    let f = m.root.lock().remove_function(2).unwrap();
    drop(f);
    assert_eq!(m.cam_read32(2, 0), 0xffff_ffff);
    assert_eq!(
        m.root.lock().remove_function(2).err(),
        Some(PciError::SlotEmpty(2))
    );
    assert_eq!(
        m.root.lock().remove_function(0).err(),
        Some(PciError::InvalidSlot(0))
    );
    assert_eq!(m.add(Some(1), 1).err(), Some(PciError::SlotOccupied(1)));
    assert_eq!(m.add(Some(32), 1).err(), Some(PciError::InvalidSlot(32)));
    // The freed BAR space is reused by the next hot-added function.
    assert_eq!(m.add(None, 0x1043).unwrap(), 2);
    assert_eq!(bar_of(2), first);
    for _ in 3..32 {
        m.add(None, 0x1044).unwrap();
    }
    assert_eq!(m.add(None, 0x1045).err(), Some(PciError::BusFull));
}

#[test]
fn bar_window_exhaustion_is_an_error() {
    let root = Arc::new(Mutex::new(PciRoot::new(0x8086, 0x29c0, WINDOW, 0x8000)));
    let f: SharedFunction = Arc::new(Mutex::new(RamFunction::new(1)));
    root.lock().add_function(None, f).unwrap();
    let g: SharedFunction = Arc::new(Mutex::new(RamFunction::new(2)));
    assert!(matches!(
        root.lock().add_function(None, g.clone()),
        Err(PciError::BarAllocation(_))
    ));
    // The failed add left the window as it was: removing the first frees room.
    root.lock().remove_function(1).unwrap();
    assert_eq!(root.lock().add_function(None, g).unwrap(), 1);
}

#[test]
fn pausing_the_bus_pauses_every_function_or_none() {
    let root = Arc::new(Mutex::new(PciRoot::new(
        0x8086,
        0x29c0,
        WINDOW,
        WINDOW_SIZE,
    )));
    let a = RamFunction::new(1);
    let b = RamFunction::new(2);
    let (a_paused, b_paused) = (a.paused.clone(), b.paused.clone());
    root.lock()
        .add_function(Some(1), Arc::new(Mutex::new(a)))
        .unwrap();
    root.lock()
        .add_function(Some(2), Arc::new(Mutex::new(b)))
        .unwrap();
    root.lock().pause().unwrap();
    assert!(a_paused.load(Ordering::SeqCst) && b_paused.load(Ordering::SeqCst));
    root.lock().resume().unwrap();
    assert!(!a_paused.load(Ordering::SeqCst) && !b_paused.load(Ordering::SeqCst));

    // A function that cannot pause: the ones paused before it run again.
    let mut c = RamFunction::new(3);
    c.refuse_pause = true;
    root.lock()
        .add_function(Some(3), Arc::new(Mutex::new(c)))
        .unwrap();
    assert!(matches!(
        root.lock().pause(),
        Err(PauseError::Backend { .. })
    ));
    assert!(!a_paused.load(Ordering::SeqCst) && !b_paused.load(Ordering::SeqCst));
}
