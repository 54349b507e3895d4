//! CPUID for each vCPU: what KVM supports, with the APIC id set per vCPU and
//! the hypervisor bit on.

use kvm_bindings::CpuId;

/// CPUID leaf 1 ECX: running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;

/// Adjusts `supported` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of `count`.
pub fn for_vcpu(supported: &CpuId, id: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => {
                // EBX[31:24] initial APIC id, EBX[23:16] logical processors.
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                entry.ecx |= ECX_HYPERVISOR;
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
        let c = for_vcpu(&base, 3, 4);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!(e[1].edx, 3);
    }
}
