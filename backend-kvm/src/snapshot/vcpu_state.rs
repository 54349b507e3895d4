//! One vCPU's architectural state, as a snapshot holds it, read from a
//! parked vCPU and put back into a fresh one.
//!
//! What is kept, and the order it goes back in: the CPUID table first
//! (KVM sizes the XSAVE area and filters MSRs by it), then the MP state,
//! the general and special registers, the XSAVE area and XCRs, the local
//! APIC, the MSRs, the debug registers, and last the pending events
//! (an exception or interrupt being delivered, NMI and SMI state), which
//! KVM would otherwise clear while the others are set. This follows the
//! order Firecracker's and Cloud Hypervisor's x86 vCPU restore use. The
//! x87 and SSE state is part of the XSAVE area, so `KVM_GET_FPU` is not
//! kept apart.
//!
//! MSRs: every index `KVM_GET_MSR_INDEX_LIST` names that this vCPU reads
//! ([`readable_msrs`]); an index KVM lists but refuses for this CPU model
//! is left out, not an error. The legacy 4 KiB `kvm_xsave` area is kept
//! (`KVM_GET_XSAVE`), enough for every feature up to AVX-512; a host
//! whose guests use AMX would need `KVM_GET_XSAVE2`.

use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, Msrs, kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state,
    kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use kvm_ioctls::{Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

/// Most MSRs read or written by one ioctl.
const MSR_CHUNK: usize = 64;

/// Why a vCPU's state could not be read or put back.
#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    /// An ioctl failed.
    #[error("{what} on vCPU {index}: {source}")]
    Kvm {
        /// The ioctl.
        what: &'static str,
        /// The vCPU.
        index: u8,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM took fewer MSRs than the state holds.
    #[error(
        "KVM_SET_MSRS on vCPU {index}: {set} of {wanted} MSRs taken (the first refused is {refused:#x})"
    )]
    MsrsRefused {
        /// The vCPU.
        index: u8,
        /// How many were taken.
        set: usize,
        /// How many were given.
        wanted: usize,
        /// The index of the first MSR refused.
        refused: u32,
    },
    /// A table in the state is larger than KVM accepts.
    #[error("vCPU {index}: {what} holds {len} entries, more than KVM accepts")]
    TooMany {
        /// The vCPU.
        index: u8,
        /// Which table.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

/// One vCPU's state. The KVM structures keep their kernel layout (as
/// byte arrays in the snapshot's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcpuState {
    /// The vCPU's index (its APIC id).
    pub index: u8,
    /// The CPUID table the VMM gave it.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// Running, halted, waiting for INIT/SIPI...
    pub mp_state: kvm_mp_state,
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers, EFER, APIC base.
    pub sregs: kvm_sregs,
    /// The legacy 4 KiB XSAVE area (`kvm_xsave.region`): x87, SSE, AVX and
    /// the rest up to AVX-512.
    pub xsave: Vec<u32>,
    /// Extended control registers (XCR0).
    pub xcrs: kvm_xcrs,
    /// The local APIC's registers.
    pub lapic: kvm_lapic_state,
    /// Model-specific registers, index and value.
    pub msrs: Vec<kvm_msr_entry>,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// Pending exception, interrupt, NMI and SMI state.
    pub events: kvm_vcpu_events,
    /// The guest's TSC frequency in kHz (`KVM_GET_TSC_KHZ`): a restore on
    /// a host with another TSC frequency asks KVM to scale to this one.
    pub tsc_khz: u32,
}

/// The MSR indices worth saving on this host: those
/// `KVM_GET_MSR_INDEX_LIST` names.
pub fn msr_indices(kvm: &Kvm) -> Result<Vec<u32>, kvm_ioctls::Error> {
    Ok(kvm.get_msr_index_list()?.as_slice().to_vec())
}

/// The entries of `indices` that `vcpu` reads, with their values.
/// `KVM_GET_MSRS` stops at the first index it refuses, so a refused index
/// is skipped and the rest are read on.
pub fn readable_msrs(
    vcpu: &VcpuFd,
    index: u8,
    indices: &[u32],
) -> Result<Vec<kvm_msr_entry>, VcpuStateError> {
    let mut read = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_CHUNK)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&i| kvm_msr_entry {
                index: i,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VcpuStateError::TooMany {
            index,
            what: "the MSR list",
            len: entries.len(),
        })?;
        let n = vcpu
            .get_msrs(&mut msrs)
            .map_err(|source| VcpuStateError::Kvm {
                what: "KVM_GET_MSRS",
                index,
                source,
            })?;
        let n = n.min(chunk.len());
        read.extend_from_slice(&msrs.as_slice()[..n]);
        // A short read means the index at `n` was refused: go on after
        // it. A full chunk refused nothing: go on with the next index.
        let next = if n < chunk.len() { n + 1 } else { n };
        rest = &rest[next..];
    }
    Ok(read)
}

/// Reads the state of `vcpu` (vCPU `index`), which must not be running;
/// `msr_indices` are the MSRs to keep ([`msr_indices`]).
///
/// An exit for a port or MMIO read completes inside KVM only at the next
/// `KVM_RUN`, so the caller must re-enter `KVM_RUN` once with
/// `immediate_exit` set before capturing a vCPU that stopped on one (the
/// KVM API documentation's rule for saving state; a parked vCPU thread has
/// done so, see [`super::vcpu_capture`]).
pub fn capture(vcpu: &VcpuFd, index: u8, msr_indices: &[u32]) -> Result<VcpuState, VcpuStateError> {
    let kvm = |what: &'static str| {
        move |source| VcpuStateError::Kvm {
            what,
            index,
            source,
        }
    };
    Ok(VcpuState {
        index,
        cpuid: vcpu
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm("KVM_GET_CPUID2"))?
            .as_slice()
            .to_vec(),
        mp_state: vcpu.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
        regs: vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?,
        sregs: vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
        xsave: vcpu
            .get_xsave()
            .map_err(kvm("KVM_GET_XSAVE"))?
            .region
            .to_vec(),
        xcrs: vcpu.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
        lapic: vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
        msrs: readable_msrs(vcpu, index, msr_indices)?,
        debugregs: vcpu.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
        events: vcpu.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        tsc_khz: vcpu.get_tsc_khz().map_err(kvm("KVM_GET_TSC_KHZ"))?,
    })
}

/// Puts `state` into `vcpu`, a vCPU of a new VM that has not run.
pub fn restore(vcpu: &VcpuFd, state: &VcpuState) -> Result<(), VcpuStateError> {
    let index = state.index;
    let kvm = |what: &'static str| {
        move |source| VcpuStateError::Kvm {
            what,
            index,
            source,
        }
    };
    let cpuid = CpuId::from_entries(&state.cpuid).map_err(|_| VcpuStateError::TooMany {
        index,
        what: "the CPUID table",
        len: state.cpuid.len(),
    })?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
    // The frequency first: the TSC MSR below is read against it. KVM
    // refuses another frequency on a host without TSC scaling.
    if vcpu.get_tsc_khz().map_err(kvm("KVM_GET_TSC_KHZ"))? != state.tsc_khz {
        vcpu.set_tsc_khz(state.tsc_khz)
            .map_err(kvm("KVM_SET_TSC_KHZ"))?;
    }
    vcpu.set_mp_state(state.mp_state)
        .map_err(kvm("KVM_SET_MP_STATE"))?;
    vcpu.set_regs(&state.regs).map_err(kvm("KVM_SET_REGS"))?;
    vcpu.set_sregs(&state.sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let mut xsave = kvm_xsave::default();
    if state.xsave.len() != xsave.region.len() {
        return Err(VcpuStateError::TooMany {
            index,
            what: "the XSAVE area (in 32-bit words; 1024 expected)",
            len: state.xsave.len(),
        });
    }
    xsave.region.copy_from_slice(&state.xsave);
    // SAFETY: `xsave` is a whole legacy 4 KiB area, the size KVM_SET_XSAVE
    // reads for every XSAVE feature set short of AMX's dynamic state, which
    // KVM offers a guest only once the VMM has asked for it with
    // `arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)`; this VMM never does, so no
    // guest of it has state beyond the 4 KiB.
    unsafe { vcpu.set_xsave(&xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
    vcpu.set_xcrs(&state.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    vcpu.set_lapic(&state.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    for chunk in state.msrs.chunks(MSR_CHUNK) {
        let msrs = Msrs::from_entries(chunk).map_err(|_| VcpuStateError::TooMany {
            index,
            what: "the MSR list",
            len: chunk.len(),
        })?;
        let set = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if set != chunk.len() {
            return Err(VcpuStateError::MsrsRefused {
                index,
                set,
                wanted: chunk.len(),
                refused: chunk.get(set).map_or(0, |e| e.index),
            });
        }
    }
    vcpu.set_debug_regs(&state.debugregs)
        .map_err(kvm("KVM_SET_DEBUGREGS"))?;
    vcpu.set_vcpu_events(&state.events)
        .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM with an in-kernel irqchip (the LAPIC state needs it) and one
    /// vCPU set up the way the VMM builds them; `None`, said as skipped,
    /// without /dev/kvm.
    fn vcpu_on_kvm() -> Option<(Kvm, kvm_ioctls::VmFd, VcpuFd)> {
        let Ok(kvm) = Kvm::new() else {
            eprintln!("SKIPPED: /dev/kvm not available");
            return None;
        };
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        let mut vcpus = crate::build::vcpus::create(&kvm, &vm, 1, "state").unwrap();
        let vcpu = vcpus.pop().unwrap();
        Some((kvm, vm, vcpu))
    }

    #[test]
    fn a_state_put_into_a_fresh_vcpu_reads_back_the_same() {
        let Some((kvm, _vm, vcpu)) = vcpu_on_kvm() else {
            return;
        };
        let indices = msr_indices(&kvm).unwrap();
        // Somewhere a guest could be: long mode values in the registers.
        let mut regs = vcpu.get_regs().unwrap();
        regs.rip = 0xffff_ffff_8100_1234;
        regs.rax = 0x1122_3344_5566_7788;
        regs.rflags = 0x246;
        vcpu.set_regs(&regs).unwrap();
        let mut sregs = vcpu.get_sregs().unwrap();
        sregs.gs.base = 0xffff_8880_1ee0_0000;
        vcpu.set_sregs(&sregs).unwrap();
        let saved = capture(&vcpu, 0, &indices).unwrap();
        assert!(!saved.msrs.is_empty(), "some MSRs read");
        assert_eq!(saved.regs.rip, 0xffff_ffff_8100_1234);

        let (_kvm2, _vm2, fresh) = vcpu_on_kvm().unwrap();
        restore(&fresh, &saved).unwrap();
        let again = capture(&fresh, 0, &indices).unwrap();
        assert_eq!(again.regs, saved.regs);
        assert_eq!(again.lapic.regs, saved.lapic.regs);
        assert_eq!(again.sregs, saved.sregs);
        assert_eq!(again.xcrs, saved.xcrs);
        assert_eq!(again.cpuid, saved.cpuid);
        assert_eq!(again.mp_state, saved.mp_state);
        assert_eq!(again.xsave, saved.xsave);
        assert_eq!(again.msrs.len(), saved.msrs.len());
    }

    #[test]
    fn a_state_survives_the_snapshot_file() {
        let Some((kvm, _vm, vcpu)) = vcpu_on_kvm() else {
            return;
        };
        let saved = capture(&vcpu, 0, &msr_indices(&kvm).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vcpu");
        super::super::state_file::write(&path, &saved).unwrap();
        let back: VcpuState = super::super::state_file::read(&path).unwrap();
        assert_eq!(back, saved);
    }

    #[test]
    fn refused_msrs_are_skipped_not_fatal() {
        let Some((_kvm, _vm, vcpu)) = vcpu_on_kvm() else {
            return;
        };
        // 0x10 (TSC) and 0x1b (APIC base) read; 0xdead_beef is no MSR (a
        // host with kvm.ignore_msrs=1 reads it as 0 all the same).
        let read = readable_msrs(&vcpu, 0, &[0x10, 0xdead_beef, 0x1b]).unwrap();
        let indices: Vec<u32> = read.iter().map(|e| e.index).collect();
        assert!(
            indices == vec![0x10, 0x1b] || indices == vec![0x10, 0xdead_beef, 0x1b],
            "{indices:x?}"
        );
    }

    /// Whether `vcpu` reads MSR `index` on its own.
    fn reads_alone(vcpu: &VcpuFd, index: u32) -> bool {
        let mut one = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .unwrap();
        vcpu.get_msrs(&mut one).unwrap() == 1
    }

    #[test]
    fn every_readable_msr_is_kept_across_chunk_boundaries() {
        let Some((kvm, _vm, vcpu)) = vcpu_on_kvm() else {
            return;
        };
        // Readable MSRs only, repeated past two whole chunks (so that a
        // chunk is read in full and more follow), then refused ones among
        // readable ones in the third.
        let readable: Vec<u32> = msr_indices(&kvm)
            .unwrap()
            .into_iter()
            .filter(|&i| reads_alone(&vcpu, i))
            .collect();
        assert!(!readable.is_empty());
        let mut indices: Vec<u32> = readable
            .iter()
            .copied()
            .cycle()
            .take(2 * MSR_CHUNK + 10)
            .collect();
        indices.insert(2 * MSR_CHUNK + 3, 0xdead_beef);
        indices.insert(2 * MSR_CHUNK + 6, 0xdead_0001);
        let expected: Vec<u32> = indices
            .iter()
            .copied()
            .filter(|&i| reads_alone(&vcpu, i))
            .collect();
        let read: Vec<u32> = readable_msrs(&vcpu, 0, &indices)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(read, expected);
    }
}
