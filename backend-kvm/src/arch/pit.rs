//! The in-kernel i8254 PIT, created with lost-tick reinjection off.
//!
//! KVM's default PIT policy re-delivers every timer tick the guest did not
//! acknowledge in time. When the guest runs slowly (nested virtualization
//! under emulation, a loaded host, a vCPU parked for a pause) ticks pile
//! up and the `kvm-pit` worker injects the backlog back to back. Linux does
//! not need the backlog (it keeps time with the TSC and kvmclock and moves
//! off the PIT to the local APIC timer early), so we discard lost ticks, as
//! QEMU's `lost_tick_policy=discard` does. (This was a suspect for the
//! nested lab's L1 soft lockups, with `kvm-pit` and a vCPU thread spinning;
//! they still happened with reinjection off.) A Linux guest that is offered
//! the TSC-deadline timer ([`crate::arch::cpuid`]) switches the PIT off at boot,
//! so the PIT is only there for guests that need it.

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, KVMIO, kvm_pit_config, kvm_reinject_control};
use kvm_ioctls::VmFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_io_nr;

use crate::error::VmmError;

mod ioctl_numbers {
    #![allow(missing_docs)]
    use super::{KVMIO, ioctl_io_nr};
    ioctl_io_nr!(KVM_REINJECT_CONTROL, KVMIO, 0x71);
}
use ioctl_numbers::KVM_REINJECT_CONTROL;

/// Creates the PIT (with the dummy speaker port `0x61`) and turns
/// reinjection of lost ticks off.
pub fn create(vm: &VmFd) -> Result<(), VmmError> {
    let config = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(config)
        .map_err(VmmError::kvm("KVM_CREATE_PIT2"))?;
    let control = kvm_reinject_control {
        pit_reinject: 0,
        ..Default::default()
    };
    // SAFETY: KVM_REINJECT_CONTROL reads a `kvm_reinject_control` (32
    // bytes, the size of `control`) from the pointer and writes nothing
    // back; `vm` is a valid VM file descriptor that has a PIT (created just
    // above), and the reference outlives the call.
    let ret = unsafe { ioctl_with_ref(vm, KVM_REINJECT_CONTROL(), &control) };
    if ret < 0 {
        return Err(VmmError::kvm("KVM_REINJECT_CONTROL")(
            kvm_ioctls::Error::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_matches_the_kernel_header() {
        // _IO(0xAE, 0x71) from <linux/kvm.h>.
        assert_eq!(KVM_REINJECT_CONTROL(), 0xae71);
    }
}
