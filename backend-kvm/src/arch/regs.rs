//! Register set-up of the boot vCPU: real mode for test payloads, 64-bit
//! long mode with identity page tables and a flat GDT for Linux; FPU and
//! local APIC defaults for every vCPU.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use crate::arch::layout::{
    BOOT_STACK, GDT_ADDR, IDT_ADDR, PD_ADDR, PDPT_ADDR, PML4_ADDR, ZERO_PAGE,
};
use crate::error::VmmError;
use crate::memory::GuestMem;

/// The flat GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
pub const GDT: [u64; 4] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x008f_8b00_0000_ffff,
];

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_RESERVED: u64 = 1 << 1;

/// A KVM segment from GDT entry `index`.
pub fn segment(entry: u64, index: u16) -> kvm_segment {
    let raw_limit = ((entry >> 32) & 0x000f_0000) | (entry & 0xffff);
    let g = ((entry >> 55) & 1) as u8;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: if g == 1 {
            ((raw_limit as u32) << 12) | 0xfff
        } else {
            raw_limit as u32
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

fn mem_err(e: vm_memory::GuestMemoryError) -> VmmError {
    VmmError::Memory(e.to_string())
}

/// Writes the GDT, an empty IDT and identity page tables for the first GiB.
pub fn write_long_mode_tables(mem: &GuestMem) -> Result<(), VmmError> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(mem_err)?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(mem_err)?;
    mem.write_obj(PDPT_ADDR | 0x03, GuestAddress(PML4_ADDR))
        .map_err(mem_err)?;
    mem.write_obj(PD_ADDR | 0x03, GuestAddress(PDPT_ADDR))
        .map_err(mem_err)?;
    for i in 0..512u64 {
        // 2 MiB pages: present, writable, page size.
        mem.write_obj((i << 21) | 0x83, GuestAddress(PD_ADDR + i * 8))
            .map_err(mem_err)?;
    }
    Ok(())
}

/// Puts `vcpu` in 64-bit mode at `entry` with `rsi` pointing at the zero page.
pub fn set_long_mode(vcpu: &VcpuFd, entry: u64) -> Result<(), VmmError> {
    let mut sregs = vcpu.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
    let code = segment(GDT[1], 1);
    let data = segment(GDT[2], 2);
    let tss = segment(GDT[3], 3);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(VmmError::kvm("KVM_SET_REGS"))
}

/// Puts `vcpu` in real mode with CS base 0 at `ip` (below 64 KiB).
pub fn set_real_mode(vcpu: &VcpuFd, ip: u64) -> Result<(), VmmError> {
    let mut sregs = vcpu.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: ip,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(VmmError::kvm("KVM_SET_REGS"))
}

/// FPU defaults (x87 control word, MXCSR) as after a reset.
pub fn set_fpu(vcpu: &VcpuFd) -> Result<(), VmmError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(VmmError::kvm("KVM_SET_FPU"))
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(regs: &[std::os::raw::c_char], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = regs[offset + i] as u8;
    }
    u32::from_le_bytes(b)
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *byte as std::os::raw::c_char;
    }
}

/// Wires LINT0 as ExtINT (the PIC) and LINT1 as NMI, as a BIOS would.
pub fn set_lint(vcpu: &VcpuFd) -> Result<(), VmmError> {
    let mut lapic = vcpu.get_lapic().map_err(VmmError::kvm("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let v = lapic_reg(&lapic.regs, reg);
        set_lapic_reg(&mut lapic.regs, reg, (v & !0x700) | (mode << 8));
    }
    vcpu.set_lapic(&lapic)
        .map_err(VmmError::kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_segments_decode() {
        let code = segment(GDT[1], 1);
        assert_eq!((code.selector, code.l, code.db, code.type_), (8, 1, 0, 0xb));
        assert_eq!(
            (code.present, code.s, code.g, code.limit),
            (1, 1, 1, 0xffff_ffff)
        );
        let data = segment(GDT[2], 2);
        assert_eq!((data.selector, data.db, data.type_), (0x10, 1, 3));
        let tss = segment(GDT[3], 3);
        assert_eq!((tss.s, tss.type_), (0, 0xb));
        assert_eq!(segment(0, 0).unusable, 1);
    }
}
