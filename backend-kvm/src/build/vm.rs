//! The KVM VM itself: `/dev/kvm`, the VM fd, guest RAM as memory slots,
//! the TSS, the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.

use std::sync::Arc;

use kvm_ioctls::{Kvm, VmFd};

use crate::arch::{layout, pit};
use crate::error::VmmError;
use crate::memory::{self, GuestMem};

/// An open `/dev/kvm`, a VM with its irqchip and PIT, and its RAM.
pub struct KvmVm {
    /// `/dev/kvm` (for capability and CPUID queries).
    pub kvm: Kvm,
    /// The VM.
    pub vm: Arc<VmFd>,
    /// Guest RAM, registered with KVM.
    pub mem: Arc<GuestMem>,
}

fn open_kvm() -> Result<Kvm, VmmError> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err(VmmError::Config("/dev/kvm does not exist".into()));
    }
    Kvm::new().map_err(VmmError::kvm("open /dev/kvm"))
}

/// Creates a VM with `mem_bytes` of RAM in the PC layout.
pub fn create(mem_bytes: u64) -> Result<KvmVm, VmmError> {
    let kvm = open_kvm()?;
    let vm = Arc::new(kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?);
    let mem = Arc::new(memory::create(mem_bytes)?);
    memory::register(&vm, &mem)?;
    vm.set_tss_address(layout::KVM_TSS_ADDR)
        .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
    pit::create(&vm)?;
    Ok(KvmVm { kvm, vm, mem })
}
