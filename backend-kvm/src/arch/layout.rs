//! The guest-physical memory map of a VM (x86-64, the usual PC layout).
//!
//! RAM starts at 0 and runs up to the 32-bit MMIO hole at 3 GiB; what does
//! not fit below the hole starts at 4 GiB. Boot structures live in the first
//! megabyte, the ACPI tables in the BIOS area at `0xe0000`.

/// Start of the 32-bit MMIO hole (3 GiB): RAM below, devices above.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole (4 GiB): RAM resumes here.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// The PCI 32-bit BAR window: from the hole's start up to the I/O APIC.
pub const PCI_MMIO32: (u32, u32) = (0xc000_0000, 0x3ec0_0000);
/// GDT for the 64-bit boot.
pub const GDT_ADDR: u64 = 0x500;
/// IDT (empty) for the 64-bit boot.
pub const IDT_ADDR: u64 = 0x520;
/// Linux's `boot_params` ("zero page").
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer of the 64-bit boot.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity page tables: PML4, PDPT, PD (1 GiB of 2 MiB pages).
pub const PML4_ADDR: u64 = 0x9000;
/// See [`PML4_ADDR`].
pub const PDPT_ADDR: u64 = 0xa000;
/// See [`PML4_ADDR`].
pub const PD_ADDR: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Room for the command line (the contract caps it at 2048 bytes).
pub const CMDLINE_MAX: usize = 0x1000;
/// Start of the extended BIOS data area: RAM ends here in the first megabyte.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables (the BIOS area Linux scans for the RSDP).
pub const ACPI_ADDR: u64 = 0xe0000;
/// Room for the ACPI tables.
pub const ACPI_MAX: usize = 0x20000;
/// Where the kernel is loaded (1 MiB).
pub const HIMEM_START: u64 = 0x10_0000;
/// KVM's TSS (three pages below the BIOS ROM, Intel only, harmless on AMD).
pub const KVM_TSS_ADDR: usize = 0xfffb_d000;

/// Lowest start of the device memory window (virtio-pmem): 64 GiB.
pub const DEVICE_MEMORY_MIN_BASE: u64 = 64 << 30;
/// End of the device memory window (512 GiB, under the 40 physical
/// address bits of the smallest CPU models we run on).
pub const DEVICE_MEMORY_END: u64 = 512 << 30;

/// Start of the device memory window for `bytes` of guest RAM: above the
/// RAM, 1 GiB aligned, at least [`DEVICE_MEMORY_MIN_BASE`].
pub fn device_memory_base(bytes: u64) -> u64 {
    let ram_end = ram_ranges(bytes)
        .last()
        .map(|(start, len)| start + len)
        .unwrap_or(0);
    ram_end
        .div_ceil(1 << 30)
        .saturating_mul(1 << 30)
        .max(DEVICE_MEMORY_MIN_BASE)
}

/// The RAM ranges (start, length) for `bytes` of guest memory.
pub fn ram_ranges(bytes: u64) -> Vec<(u64, u64)> {
    let low = bytes.min(MMIO_HOLE_START);
    let mut ranges = vec![(0, low)];
    if bytes > low {
        ranges.push((HIGH_RAM_START, bytes - low));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![(0, 3 << 30), (HIGH_RAM_START, 1 << 30)]
        );
    }

    #[test]
    fn device_memory_lies_above_ram() {
        assert_eq!(device_memory_base(256 << 20), DEVICE_MEMORY_MIN_BASE);
        assert_eq!(device_memory_base(100 << 30), 101 << 30);
    }
}
