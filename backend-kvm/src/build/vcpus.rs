//! The vCPUs of a VM: CPUID per vCPU (APIC id, hypervisor bit, the
//! TSC-deadline timer where KVM emulates it), boot MSRs, FPU and local APIC
//! defaults. The boot vCPU's registers are set by the boot image
//! ([`crate::arch::boot::BootSpec::load`]).

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use crate::arch::{cpuid, msrs, regs};
use crate::error::VmmError;

/// Creates `count` vCPUs of `vm` (`vm_id` names the VM in logs).
pub fn create(kvm: &Kvm, vm: &VmFd, count: u8, vm_id: &str) -> Result<Vec<VcpuFd>, VmmError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    let mut vcpus = Vec::with_capacity(usize::from(count));
    for id in 0..count {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        vcpu.set_cpuid2(&cpuid::for_vcpu(&supported, id, count, tsc_deadline))
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        let (set, wanted) = msrs::set_boot_msrs(&vcpu)?;
        if set != wanted {
            tracing::warn!(vm = %vm_id, vcpu = id, "KVM accepted {set} of {wanted} boot MSRs");
        }
        regs::set_fpu(&vcpu)?;
        regs::set_lint(&vcpu)?;
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}
