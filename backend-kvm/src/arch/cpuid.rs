//! CPUID for each vCPU: what KVM supports, with the APIC id set per vCPU,
//! the hypervisor bit on and, where KVM emulates it, the TSC-deadline mode of
//! the local APIC timer.
//!
//! `KVM_GET_SUPPORTED_CPUID` leaves the TSC-deadline bit clear even though
//! KVM emulates the mode (it reports it as `KVM_CAP_TSC_DEADLINE_TIMER`).
//! Without it Linux cannot trust the local APIC timer without calibrating
//! it against the PIT, keeps the PIT as its clock event device, and KVM's
//! `kvm-pit` worker ticks for every guest. With it (and ARAT, which KVM
//! reports, and the TSC frequency from kvmclock) Linux switches the PIT off
//! at boot (`apic_needs_pit()` in `arch/x86/kernel/apic/apic.c`).

use kvm_bindings::CpuId;

/// CPUID leaf 1 ECX: running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID leaf 1 ECX: the local APIC timer has a TSC-deadline mode.
pub const ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Adjusts `supported` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of
/// `count`; `tsc_deadline` says whether KVM has
/// `KVM_CAP_TSC_DEADLINE_TIMER`.
pub fn for_vcpu(supported: &CpuId, id: u8, count: u8, tsc_deadline: bool) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => {
                // EBX[31:24] initial APIC id, EBX[23:16] logical processors.
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                entry.ecx |= ECX_HYPERVISOR;
                if tsc_deadline {
                    entry.ecx |= ECX_TSC_DEADLINE;
                }
            }
            // Extended topology: EDX is the x2APIC id.
            0xb | 0x1f => entry.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use kvm_bindings::kvm_cpuid_entry2;

    use super::*;

    #[test]
    fn sets_apic_id_and_hypervisor_bit() {
        let base = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xff00_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                ..Default::default()
            },
        ])
        .unwrap();
        let c = for_vcpu(&base, 3, 4, false);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(e[1].edx, 3);
    }

    #[test]
    fn offers_tsc_deadline_only_when_kvm_has_it() {
        let base = CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: 1,
            ..Default::default()
        }])
        .unwrap();
        let with = for_vcpu(&base, 0, 1, true);
        assert_ne!(with.as_slice()[0].ecx & ECX_TSC_DEADLINE, 0);
        let without = for_vcpu(&base, 0, 1, false);
        assert_eq!(without.as_slice()[0].ecx & ECX_TSC_DEADLINE, 0);
    }
}
