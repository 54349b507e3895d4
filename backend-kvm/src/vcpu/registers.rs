//! A one-line summary of where a vCPU stood, for the detail of a crash:
//! the instruction and stack pointers, the paging and protection state, and
//! the per-CPU (GS) base, read with `KVM_GET_REGS` and `KVM_GET_SREGS`.
//!
//! After a triple fault on AMD the values are the reset state (KVM
//! reinitializes the vCPU when it intercepts the shutdown); the summary
//! says so when it sees them.
//!
//! A triple fault leaves no trace in the guest's own log; these values
//! tell a guest kernel that lost its per-CPU base (GS 0 in 64-bit mode) or
//! its interrupt table from one that jumped to a bad address. In 64-bit
//! mode the summary also walks the guest's page tables for the instruction
//! pointer ([`walk`]): a guest that faults again and again on an
//! instruction its own tables map (RIP = CR2, every level present) is one
//! whose (nested) MMU is out of step with its tables, not one that jumped
//! to a bad address.

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// EFER.LMA: the CPU runs in long mode.
const EFER_LMA: u64 = 1 << 10;
/// CR4.LA57: five-level paging.
const CR4_LA57: u64 = 1 << 12;
/// A page-table entry's present bit.
const PRESENT: u64 = 1;
/// A directory entry that maps a large page (PS).
const LARGE: u64 = 1 << 7;
/// The physical address bits of an entry (bits 12 to 51).
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The summary of `vcpu`'s registers, or why they could not be read, with
/// the page walk of RIP through `mem` in long mode.
pub fn summary<M: GuestMemory>(vcpu: &VcpuFd, mem: &M) -> String {
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(regs), Ok(sregs)) => {
            let mut line = format(&regs, &sregs);
            if is_reset_state(&regs, &sregs) {
                line.push_str(" (the reset state: KVM reinitialized the vCPU)");
            }
            if sregs.efer & EFER_LMA != 0 && sregs.cr4 & CR4_LA57 == 0 {
                line.push_str(&format!("; rip walk {}", walk(mem, sregs.cr3, regs.rip)));
            }
            line
        }
        (Err(e), _) | (_, Err(e)) => format!("registers unreadable: {e}"),
    }
}

/// Whether the vCPU is at the reset vector in real mode, as after a reset.
fn is_reset_state(regs: &kvm_regs, sregs: &kvm_sregs) -> bool {
    regs.rip == 0xfff0 && sregs.cs.selector == 0xf000 && sregs.cr0 & 1 == 0
}

/// The four-level page walk of `address` from `cr3` in `mem`: each level's
/// entry, up to the first that is not present or maps a large page.
pub fn walk<M: GuestMemory>(mem: &M, cr3: u64, address: u64) -> String {
    let mut table = cr3 & ADDRESS_MASK;
    let mut entries = Vec::new();
    for (level, shift) in [("pml4e", 39), ("pdpte", 30), ("pde", 21), ("pte", 12)] {
        let index = (address >> shift) & 0x1ff;
        let at = GuestAddress(table + index * 8);
        let entry: u64 = match mem.read_obj(at) {
            Ok(entry) => entry,
            Err(_) => {
                entries.push(format!("{level} at {:#x} outside guest memory", at.0));
                break;
            }
        };
        entries.push(format!("{level} {entry:#x}"));
        if entry & PRESENT == 0 || (shift != 12 && shift != 39 && entry & LARGE != 0) {
            break;
        }
        table = entry & ADDRESS_MASK;
    }
    entries.join(" ")
}

/// The summary of `regs` and `sregs`.
fn format(regs: &kvm_regs, sregs: &kvm_sregs) -> String {
    format!(
        "rip {:#x} rsp {:#x} rflags {:#x} cs {:#x} cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} \
         gs.base {:#x} idt {:#x}+{:#x}",
        regs.rip,
        regs.rsp,
        regs.rflags,
        sregs.cs.selector,
        sregs.cr0,
        sregs.cr2,
        sregs.cr3,
        sregs.cr4,
        sregs.efer,
        sregs.gs.base,
        sregs.idt.base,
        sregs.idt.limit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_values_a_triple_fault_is_read_by() {
        let regs = kvm_regs {
            rip: 0xffff_ffff_8100_0000,
            rsp: 0x1000,
            ..Default::default()
        };
        let mut sregs = kvm_sregs::default();
        sregs.gs.base = 0;
        sregs.idt.limit = 0xfff;
        let line = format(&regs, &sregs);
        assert!(
            line.starts_with("rip 0xffffffff81000000 rsp 0x1000 "),
            "{line}"
        );
        assert!(line.contains("gs.base 0x0 idt 0x0+0xfff"), "{line}");
    }

    #[test]
    fn the_walk_follows_each_level_and_stops_at_a_missing_or_large_entry() {
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let address: u64 = 0xffff_ffff_c075_ddcc;
        let index = |shift: u32| (address >> shift) & 0x1ff;
        // pml4 at 0x1000 -> pdpt at 0x2000 -> pd at 0x3000 -> pt at 0x4000.
        let put = |table: u64, shift: u32, entry: u64| {
            mem.write_obj(entry, GuestAddress(table + index(shift) * 8))
                .unwrap();
        };
        put(0x1000, 39, 0x2000 | PRESENT);
        put(0x2000, 30, 0x3000 | PRESENT);
        put(0x3000, 21, 0x4000 | PRESENT);
        put(0x4000, 12, 0x5000 | PRESENT);
        assert_eq!(
            walk(&mem, 0x1000, address),
            "pml4e 0x2001 pdpte 0x3001 pde 0x4001 pte 0x5001"
        );
        put(0x3000, 21, 0x20_0000 | PRESENT | LARGE);
        assert_eq!(
            walk(&mem, 0x1000, address),
            "pml4e 0x2001 pdpte 0x3001 pde 0x200081"
        );
        put(0x2000, 30, 0);
        assert_eq!(walk(&mem, 0x1000, address), "pml4e 0x2001 pdpte 0x0");
        put(0x1000, 39, 0x7000_0000 | PRESENT);
        assert_eq!(
            walk(&mem, 0x1000, address),
            format!(
                "pml4e 0x70000001 pdpte at {:#x} outside guest memory",
                0x7000_0000 + index(30) * 8
            )
        );
    }

    #[test]
    fn a_fresh_vcpu_has_a_summary_on_this_host() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("SKIPPED: /dev/kvm not available");
            return;
        };
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        // Reset state: real mode at the reset vector, so no walk.
        let line = summary(&vcpu, &mem);
        assert!(line.starts_with("rip 0xfff0 "), "{line}");
        assert!(
            line.ends_with("(the reset state: KVM reinitialized the vCPU)"),
            "{line}"
        );
        assert!(!line.contains("walk"), "{line}");
    }
}
