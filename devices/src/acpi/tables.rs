//! Builds the ACPI tables (RSDP, XSDT, FADT, FACS, DSDT, MADT, optional
//! MCFG) as one image to copy into guest memory at a fixed address (the BIOS
//! area at `0xe0000`, where Linux also scans for the RSDP).
//!
//! The DSDT is written here with `acpi_tables`' AML builder: the `_S5`
//! package, the PCI root bridge `\_SB.PCI0` (`PNP0A03`) whose `_CRS` covers
//! bus numbers 0-255, the configuration ports `0xcf8..0xcff`, the other I/O
//! ports and a 32-bit (and optionally a 64-bit) MMIO window for BARs, and the
//! pvpanic device (`QEMU0001`) when there is one. Later users (PCI hotplug)
//! hook in raw AML through [`AcpiConfig::root_bridge_aml`] (inside `PCI0`)
//! and [`AcpiConfig::top_level_aml`] (for example `Scope (\_GPE) { ... }`).

use acpi_tables::Aml;
use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, EISAName, IO, Name, Package, ResourceTemplate,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;

use crate::acpi::pm;

/// OEM id in every table.
pub const OEM_ID: [u8; 6] = *b"UVMKVM";
/// OEM table id in every table.
pub const OEM_TABLE_ID: [u8; 8] = *b"UVMTABLE";
/// The local APIC base address.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// The I/O APIC base address.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;

/// An ECAM (PCI Express enhanced configuration) window for the MCFG table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecam {
    /// Base address of the window.
    pub base: u64,
    /// Last bus number covered (the first is 0).
    pub end_bus: u8,
}

/// What the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Number of vCPUs (APIC ids `0..vcpus`).
    pub vcpus: u8,
    /// First port of the PM block ([`pm::PM_BASE`]).
    pub pm_base: u16,
    /// 32-bit MMIO window for PCI BARs: base and length.
    pub pci_mmio32: (u32, u32),
    /// 64-bit MMIO window for PCI BARs, if any: base and length.
    pub pci_mmio64: Option<(u64, u64)>,
    /// ECAM window; `None` leaves out the MCFG (config space via `0xcf8` only).
    pub ecam: Option<Ecam>,
    /// The pvpanic port, if the VM has the device.
    pub pvpanic_port: Option<u16>,
    /// Raw AML appended inside `Device (\_SB.PCI0)` (slots, `_PRT`, ...).
    pub root_bridge_aml: Vec<u8>,
    /// Raw AML appended at the DSDT's top level (for example `\_GPE` methods).
    pub top_level_aml: Vec<u8>,
}

impl AcpiConfig {
    /// A configuration for `vcpus` vCPUs with the standard PM block and no extras.
    pub fn new(vcpus: u8, pci_mmio32: (u32, u32)) -> Self {
        AcpiConfig {
            vcpus,
            pm_base: pm::PM_BASE,
            pci_mmio32,
            pci_mmio64: None,
            ecam: None,
            pvpanic_port: None,
            root_bridge_aml: Vec::new(),
            top_level_aml: Vec::new(),
        }
    }
}

/// Why the tables could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TablesError {
    /// The tables do not fit in the space given.
    #[error("the ACPI tables need {needed} bytes but only {available} are available")]
    TooLarge {
        /// Bytes the image needs.
        needed: usize,
        /// Bytes available at the base address.
        available: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid ACPI configuration: {0}")]
    Invalid(String),
}

/// The built tables: `bytes` go to guest-physical `base`; the RSDP is at `rsdp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiImage {
    /// Guest-physical address of `bytes[0]`.
    pub base: u64,
    /// The table image.
    pub bytes: Vec<u8>,
    /// Guest-physical address of the RSDP (for `boot_params.acpi_rsdp_addr`).
    pub rsdp: u64,
}

/// Raw AML bytes as an [`Aml`] object.
struct RawAml<'a>(&'a [u8]);

impl Aml for RawAml<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(self.0);
    }
}

fn aml_bytes(object: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    object.to_aml_bytes(&mut v);
    v
}

/// The DSDT's AML body (without the table header).
pub fn dsdt_aml(config: &AcpiConfig) -> Vec<u8> {
    let mut body = Vec::new();
    // Name (_S5, Package () { S5, S5, 0, 0 }): SLP_TYP for PM1a and PM1b.
    let s5 = pm::S5_SLP_TYP as u8;
    Name::new("_S5_".into(), &Package::new(vec![&s5, &s5, &0u8, &0u8])).to_aml_bytes(&mut body);

    let (mmio_base, mmio_len) = config.pci_mmio32;
    let mmio_end = mmio_base.saturating_add(mmio_len.saturating_sub(1));
    let bus = AddressSpace::<u16>::new_bus_number(0, 0xff);
    let cfg_io = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0x0000, 0x0cf7, None);
    let io_high = AddressSpace::<u16>::new_io(0x0d00, 0xffff, None);
    let mem32 = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        mmio_base,
        mmio_end,
        None,
    );
    let mem64 = config.pci_mmio64.map(|(base, len)| {
        AddressSpace::<u64>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            base,
            base.saturating_add(len.saturating_sub(1)),
            None,
        )
    });
    let mut resources: Vec<&dyn Aml> = vec![&bus, &cfg_io, &io_low, &io_high, &mem32];
    if let Some(m) = &mem64 {
        resources.push(m);
    }
    let crs = ResourceTemplate::new(resources);
    let hid = EISAName::new("PNP0A03");
    let hid_name = Name::new("_HID".into(), &hid);
    let adr = Name::new("_ADR".into(), &0u8);
    let seg = Name::new("_SEG".into(), &0u8);
    let uid = Name::new("_UID".into(), &0u8);
    let bbn = Name::new("_BBN".into(), &0u8);
    let crs_name = Name::new("_CRS".into(), &crs);
    let extra = RawAml(&config.root_bridge_aml);
    let pci0 = aml::Device::new(
        "PCI0".into(),
        vec![&hid_name, &adr, &seg, &uid, &bbn, &crs_name, &extra],
    );

    let pvpanic_hid = Name::new("_HID".into(), &"QEMU0001");
    let pvpanic_sta = Name::new("_STA".into(), &0x0fu8);
    let pvpanic_port = config.pvpanic_port.unwrap_or(0);
    let pvpanic_io = IO::new(pvpanic_port, pvpanic_port, 1, 1);
    let pvpanic_crs = ResourceTemplate::new(vec![&pvpanic_io]);
    let pvpanic_crs_name = Name::new("_CRS".into(), &pvpanic_crs);
    let pvpanic = aml::Device::new(
        "PEVT".into(),
        vec![&pvpanic_hid, &pvpanic_sta, &pvpanic_crs_name],
    );

    let mut sb_children: Vec<&dyn Aml> = vec![&pci0];
    if config.pvpanic_port.is_some() {
        sb_children.push(&pvpanic);
    }
    aml::Scope::new("\\_SB_".into(), sb_children).to_aml_bytes(&mut body);
    body.extend_from_slice(&config.top_level_aml);
    body
}

/// Table sizes and field offsets (ACPI 6.x), for the builder and for tests.
pub mod layout {
    /// Length of the FADT (revision 6).
    pub const FADT_LEN: usize = 276;
    /// FADT: FIRMWARE_CTRL (32-bit FACS address).
    pub const FADT_FIRMWARE_CTRL: usize = 36;
    /// FADT: DSDT (32-bit).
    pub const FADT_DSDT: usize = 40;
    /// FADT: SCI_INT.
    pub const FADT_SCI_INT: usize = 46;
    /// FADT: SMI_CMD.
    pub const FADT_SMI_CMD: usize = 48;
    /// FADT: PM1a_EVT_BLK.
    pub const FADT_PM1A_EVT_BLK: usize = 56;
    /// FADT: PM1a_CNT_BLK.
    pub const FADT_PM1A_CNT_BLK: usize = 64;
    /// FADT: GPE0_BLK.
    pub const FADT_GPE0_BLK: usize = 80;
    /// FADT: PM1_EVT_LEN.
    pub const FADT_PM1_EVT_LEN: usize = 88;
    /// FADT: PM1_CNT_LEN.
    pub const FADT_PM1_CNT_LEN: usize = 89;
    /// FADT: GPE0_BLK_LEN.
    pub const FADT_GPE0_BLK_LEN: usize = 92;
    /// FADT: IAPC_BOOT_ARCH.
    pub const FADT_IAPC_BOOT_ARCH: usize = 109;
    /// FADT: Flags.
    pub const FADT_FLAGS: usize = 112;
    /// FADT: RESET_REG (generic address structure).
    pub const FADT_RESET_REG: usize = 116;
    /// FADT: RESET_VALUE.
    pub const FADT_RESET_VALUE: usize = 128;
    /// FADT: minor version.
    pub const FADT_MINOR_VERSION: usize = 131;
    /// FADT: X_FIRMWARE_CTRL.
    pub const FADT_X_FIRMWARE_CTRL: usize = 132;
    /// FADT: X_DSDT.
    pub const FADT_X_DSDT: usize = 140;
    /// FADT: X_PM1a_EVT_BLK.
    pub const FADT_X_PM1A_EVT_BLK: usize = 148;
    /// FADT: X_PM1a_CNT_BLK.
    pub const FADT_X_PM1A_CNT_BLK: usize = 172;
    /// FADT: X_GPE0_BLK.
    pub const FADT_X_GPE0_BLK: usize = 220;
    /// FADT flag: WBINVD works.
    pub const FLAG_WBINVD: u32 = 1 << 0;
    /// FADT flag: the power button is a control method device (clear: fixed).
    pub const FLAG_PWR_BUTTON: u32 = 1 << 4;
    /// FADT flag: no fixed sleep button.
    pub const FLAG_SLP_BUTTON: u32 = 1 << 5;
    /// FADT flag: the reset register is supported.
    pub const FLAG_RESET_REG_SUP: u32 = 1 << 10;
    /// IAPC_BOOT_ARCH: no VGA.
    pub const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
    /// IAPC_BOOT_ARCH: no MSI (clear: MSI works).
    pub const BOOT_ARCH_MSI_NOT_SUPPORTED: u16 = 1 << 3;
    /// Length of the FACS.
    pub const FACS_LEN: usize = 64;
}

/// A generic address structure for an I/O port register of `bits` width.
fn gas_io(port: u16, bits: u8, access_size: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bits;
    g[2] = 0;
    g[3] = access_size;
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

fn facs() -> Vec<u8> {
    let mut f = vec![0u8; layout::FACS_LEN];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&(layout::FACS_LEN as u32).to_le_bytes());
    f[32] = 2; // version
    f
}

fn fadt(config: &AcpiConfig, dsdt: u64, facs: u64) -> Result<Sdt, TablesError> {
    use layout::*;
    let to32 = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| TablesError::Invalid(format!("{what} above 4 GiB")))
    };
    let mut t = Sdt::new(*b"FACP", FADT_LEN as u32, 6, OEM_ID, OEM_TABLE_ID, 1);
    let pm1a_evt = config.pm_base + pm::PM1A_EVT_OFFSET;
    let pm1a_cnt = config.pm_base + pm::PM1A_CNT_OFFSET;
    let gpe0 = config.pm_base + pm::GPE0_OFFSET;
    let reset = config.pm_base + pm::RESET_OFFSET;
    t.write_u32(FADT_FIRMWARE_CTRL, to32(facs, "FACS")?);
    t.write_u32(FADT_DSDT, to32(dsdt, "DSDT")?);
    t.write_u16(FADT_SCI_INT, u16::from(pm::SCI_IRQ));
    t.write_u32(FADT_SMI_CMD, 0);
    t.write_u32(FADT_PM1A_EVT_BLK, u32::from(pm1a_evt));
    t.write_u32(FADT_PM1A_CNT_BLK, u32::from(pm1a_cnt));
    t.write_u32(FADT_GPE0_BLK, u32::from(gpe0));
    t.write_u8(FADT_PM1_EVT_LEN, pm::PM1_EVT_LEN);
    t.write_u8(FADT_PM1_CNT_LEN, pm::PM1_CNT_LEN);
    t.write_u8(FADT_GPE0_BLK_LEN, pm::GPE0_LEN);
    // No legacy devices or 8042 are advertised (the i8042 is only a reset
    // line), no VGA; MSI works.
    t.write_u16(FADT_IAPC_BOOT_ARCH, BOOT_ARCH_VGA_NOT_PRESENT);
    t.write_u32(
        FADT_FLAGS,
        FLAG_WBINVD | FLAG_SLP_BUTTON | FLAG_RESET_REG_SUP,
    );
    t.write_bytes(FADT_RESET_REG, &gas_io(reset, 8, 1));
    t.write_u8(FADT_RESET_VALUE, pm::RESET_VALUE);
    t.write_u8(FADT_MINOR_VERSION, 0);
    t.write_u64(FADT_X_FIRMWARE_CTRL, 0);
    t.write_u64(FADT_X_DSDT, dsdt);
    t.write_bytes(
        FADT_X_PM1A_EVT_BLK,
        &gas_io(pm1a_evt, pm::PM1_EVT_LEN * 8, 2),
    );
    t.write_bytes(
        FADT_X_PM1A_CNT_BLK,
        &gas_io(pm1a_cnt, pm::PM1_CNT_LEN * 8, 2),
    );
    t.write_bytes(FADT_X_GPE0_BLK, &gas_io(gpe0, pm::GPE0_LEN * 8, 1));
    Ok(t)
}

fn madt(config: &AcpiConfig) -> Sdt {
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, 1);
    t.write_u32(36, LAPIC_ADDR);
    t.write_u32(40, 1); // PCAT_COMPAT: dual 8259s present
    for id in 0..config.vcpus {
        // Processor local APIC: type 0, length 8, uid, APIC id, flags (enabled).
        let mut e = [0u8; 8];
        e[0] = 0;
        e[1] = 8;
        e[2] = id;
        e[3] = id;
        e[4..8].copy_from_slice(&1u32.to_le_bytes());
        t.append_slice(&e);
    }
    // I/O APIC: type 1, length 12, id (after the CPUs), address, GSI base 0.
    let mut e = [0u8; 12];
    e[0] = 1;
    e[1] = 12;
    e[2] = config.vcpus;
    e[4..8].copy_from_slice(&IOAPIC_ADDR.to_le_bytes());
    t.append_slice(&e);
    // Interrupt source override: ISA IRQ 9 (SCI) = GSI 9, edge, active high,
    // so an irqfd edge delivers it.
    let mut e = [0u8; 10];
    e[0] = 2;
    e[1] = 10;
    e[2] = 0;
    e[3] = pm::SCI_IRQ;
    e[4..8].copy_from_slice(&u32::from(pm::SCI_IRQ).to_le_bytes());
    e[8..10].copy_from_slice(&0x0005u16.to_le_bytes()); // polarity 01 high, trigger 01 edge
    t.append_slice(&e);
    t
}

fn mcfg(ecam: Ecam) -> Sdt {
    let mut t = Sdt::new(*b"MCFG", 44, 1, OEM_ID, OEM_TABLE_ID, 1);
    let mut e = [0u8; 16];
    e[0..8].copy_from_slice(&ecam.base.to_le_bytes());
    e[8..10].copy_from_slice(&0u16.to_le_bytes()); // segment
    e[10] = 0;
    e[11] = ecam.end_bus;
    t.append_slice(&e);
    t
}

fn align(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

/// Builds every table for guest-physical address `base`, in at most `max_len` bytes.
pub fn build(config: &AcpiConfig, base: u64, max_len: usize) -> Result<AcpiImage, TablesError> {
    if config.vcpus == 0 || config.vcpus == u8::MAX {
        return Err(TablesError::Invalid(format!("{} vCPUs", config.vcpus)));
    }
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, 1);
    dsdt.append_slice(&dsdt_aml(config));
    let facs = facs();
    let madt = madt(config);
    let mcfg = config.ecam.map(mcfg);

    // Layout: RSDP, XSDT, FACS (64-byte aligned), DSDT, FADT, MADT, MCFG.
    let rsdp_off = 0usize;
    let xsdt_off = align(rsdp_off + Rsdp::len(), 16);
    let entries = 2 + usize::from(mcfg.is_some());
    let facs_off = align(xsdt_off + 36 + 8 * entries, 64);
    let dsdt_off = align(facs_off + facs.len(), 16);
    let fadt_off = align(dsdt_off + dsdt.len(), 16);
    let madt_off = align(fadt_off + layout::FADT_LEN, 16);
    let mcfg_off = align(madt_off + madt.len(), 16);
    let end = mcfg_off + mcfg.as_ref().map_or(0, Sdt::len);
    if end > max_len {
        return Err(TablesError::TooLarge {
            needed: end,
            available: max_len,
        });
    }
    let addr = |off: usize| base + off as u64;
    let fadt = fadt(config, addr(dsdt_off), addr(facs_off))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    xsdt.add_entry(addr(fadt_off));
    xsdt.add_entry(addr(madt_off));
    if mcfg.is_some() {
        xsdt.add_entry(addr(mcfg_off));
    }
    let rsdp = Rsdp::new(OEM_ID, addr(xsdt_off));

    let mut bytes = vec![0u8; end];
    let mut put = |off: usize, data: &[u8]| bytes[off..off + data.len()].copy_from_slice(data);
    put(rsdp_off, &aml_bytes(&rsdp));
    put(xsdt_off, &aml_bytes(&xsdt));
    put(facs_off, &facs);
    put(dsdt_off, dsdt.as_slice());
    put(fadt_off, fadt.as_slice());
    put(madt_off, madt.as_slice());
    if let Some(m) = &mcfg {
        put(mcfg_off, m.as_slice());
    }
    Ok(AcpiImage {
        base,
        bytes,
        rsdp: addr(rsdp_off),
    })
}

#[cfg(test)]
mod tests {
    use super::layout::*;
    use super::*;

    const BASE: u64 = 0xe0000;

    fn image() -> AcpiImage {
        let mut c = AcpiConfig::new(2, (0xc000_0000, 0x3ec0_0000));
        c.pvpanic_port = Some(0x505);
        c.ecam = Some(Ecam {
            base: 0xb000_0000,
            end_bus: 0,
        });
        build(&c, BASE, 0x20000).unwrap()
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    /// The table at guest address `addr`, checked for its checksum.
    fn table(img: &AcpiImage, addr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let off = (addr - img.base) as usize;
        let b = &img.bytes[off..];
        assert_eq!(&b[0..4], sig);
        let len = u32_at(b, 4) as usize;
        let t = b[..len].to_vec();
        assert_eq!(sum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
        t
    }

    #[test]
    fn rsdp_xsdt_fadt_chain_parses_back_with_valid_checksums() {
        let img = image();
        let rsdp = &img.bytes[0..36];
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[0..20]), 0);
        assert_eq!(sum(rsdp), 0);
        assert_eq!(rsdp[15], 2, "revision");
        let xsdt = table(&img, u64_at(rsdp, 24), b"XSDT");
        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|o| u64_at(&xsdt, o))
            .collect();
        assert_eq!(entries.len(), 3);
        let fadt = table(&img, entries[0], b"FACP");
        assert_eq!(fadt.len(), FADT_LEN);
        table(&img, entries[1], b"APIC");
        table(&img, entries[2], b"MCFG");

        assert_eq!(u32_at(&fadt, FADT_PM1A_EVT_BLK), 0x600);
        assert_eq!(u32_at(&fadt, FADT_PM1A_CNT_BLK), 0x604);
        assert_eq!(u32_at(&fadt, FADT_GPE0_BLK), 0x608);
        assert_eq!(fadt[FADT_PM1_EVT_LEN], 4);
        assert_eq!(fadt[FADT_PM1_CNT_LEN], 2);
        assert_eq!(fadt[FADT_GPE0_BLK_LEN], 8);
        assert_eq!(
            u16::from_le_bytes([fadt[FADT_SCI_INT], fadt[FADT_SCI_INT + 1]]),
            9
        );
        assert_eq!(u32_at(&fadt, FADT_SMI_CMD), 0);
        let flags = u32_at(&fadt, FADT_FLAGS);
        assert_eq!(flags & FLAG_PWR_BUTTON, 0, "fixed power button");
        assert_ne!(flags & FLAG_RESET_REG_SUP, 0);
        assert_eq!(flags & (1 << 20), 0, "not hardware reduced");
        assert_eq!(fadt[FADT_RESET_REG], 1, "reset register in I/O space");
        assert_eq!(u64_at(&fadt, FADT_RESET_REG + 4), 0x610);
        assert_eq!(fadt[FADT_RESET_VALUE], pm::RESET_VALUE);
        assert_eq!(u64_at(&fadt, FADT_X_PM1A_CNT_BLK + 4), 0x604);
        let dsdt_addr = u64_at(&fadt, FADT_X_DSDT);
        assert_eq!(u64::from(u32_at(&fadt, FADT_DSDT)), dsdt_addr);
        let facs_addr = u64::from(u32_at(&fadt, FADT_FIRMWARE_CTRL));
        assert_eq!(facs_addr % 64, 0, "FACS is 64-byte aligned");
        let facs_off = (facs_addr - BASE) as usize;
        assert_eq!(&img.bytes[facs_off..facs_off + 4], b"FACS");

        let dsdt = table(&img, dsdt_addr, b"DSDT");
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"_S5_"));
        assert!(has(b"PCI0"));
        assert!(has(b"PEVT"));
        assert!(has(b"QEMU0001"));
        // EISA id of PNP0A03, as EISAName encodes it.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0a, 0x03]));
    }

    #[test]
    fn madt_lists_every_cpu_the_ioapic_and_the_sci_override() {
        let img = image();
        let xsdt = table(&img, u64_at(&img.bytes, 24), b"XSDT");
        let madt = table(&img, u64_at(&xsdt, 44), b"APIC");
        assert_eq!(u32_at(&madt, 36), LAPIC_ADDR);
        let mut off = 44;
        let mut kinds = Vec::new();
        while off < madt.len() {
            kinds.push((madt[off], madt[off + 3]));
            off += usize::from(madt[off + 1]);
        }
        assert_eq!(off, madt.len());
        assert_eq!(kinds, vec![(0, 0), (0, 1), (1, 0), (2, 9)]);
    }

    #[test]
    fn hooks_land_in_the_dsdt_and_size_is_checked() {
        let mut c = AcpiConfig::new(1, (0xc000_0000, 0x1000_0000));
        c.top_level_aml = b"HOOKTOP".to_vec();
        c.root_bridge_aml = b"HOOKPCI".to_vec();
        let aml = dsdt_aml(&c);
        let pos = |n: &[u8]| aml.windows(n.len()).position(|w| w == n).unwrap();
        assert!(pos(b"PCI0") < pos(b"HOOKPCI"));
        assert!(pos(b"HOOKPCI") < pos(b"HOOKTOP"));
        assert!(matches!(
            build(&c, BASE, 64),
            Err(TablesError::TooLarge { .. })
        ));
        assert!(matches!(
            build(&AcpiConfig::new(0, (0, 0)), BASE, 0x20000),
            Err(TablesError::Invalid(_))
        ));
    }
}
