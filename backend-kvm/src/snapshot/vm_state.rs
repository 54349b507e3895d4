//! The state KVM keeps for the whole VM rather than per vCPU, as a
//! snapshot holds it: the in-kernel interrupt controllers (both 8259 PICs
//! and the IOAPIC, with its redirection table), the PIT's three channels,
//! and the KVM clock (the guest's `kvmclock` time base).
//!
//! Restore order: the irqchip and PIT are set on a VM created the same way
//! (`KVM_CREATE_IRQCHIP`, `KVM_CREATE_PIT2`) before any vCPU runs; the
//! clock is set last, just before the vCPUs resume, so that the guest's
//! clock continues from the save point instead of jumping by the time the
//! snapshot spent on disk.

use kvm_bindings::{
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, kvm_clock_data, kvm_irqchip,
    kvm_pit_state2,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

/// The three in-kernel interrupt controllers, in the order kept.
const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

/// Why the VM's state could not be read or put back.
#[derive(Debug, thiserror::Error)]
pub enum VmStateError {
    /// An ioctl failed.
    #[error("{what}: {source}")]
    Kvm {
        /// The ioctl (and which chip).
        what: String,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The state does not hold the three interrupt controllers in order.
    #[error("the VM state holds interrupt controllers {found:?}; expected {CHIPS:?}")]
    Chips {
        /// The chip ids found.
        found: Vec<u32>,
    },
}

fn kvm(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> VmStateError {
    let what = what.into();
    move |source| VmStateError::Kvm { what, source }
}

/// The VM-wide state. The KVM structures keep their kernel layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    /// PIC master, PIC slave and IOAPIC, in that order.
    pub irqchips: Vec<kvm_irqchip>,
    /// The PIT's channels and speaker state.
    pub pit: kvm_pit_state2,
    /// The KVM clock.
    pub clock: kvm_clock_data,
}

/// Reads the VM-wide state of `vm`, whose vCPUs are all parked.
pub fn capture(vm: &VmFd) -> Result<VmState, VmStateError> {
    let mut irqchips = Vec::with_capacity(CHIPS.len());
    for chip in CHIPS {
        let mut state = kvm_irqchip {
            chip_id: chip,
            ..Default::default()
        };
        vm.get_irqchip(&mut state)
            .map_err(kvm(format!("KVM_GET_IRQCHIP (chip {chip})")))?;
        irqchips.push(state);
    }
    Ok(VmState {
        irqchips,
        pit: vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
        clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
    })
}

/// Puts the interrupt controllers and the PIT of `state` into `vm`, a VM
/// with its irqchip and PIT created and no vCPU run yet.
pub fn restore_devices(vm: &VmFd, state: &VmState) -> Result<(), VmStateError> {
    let found: Vec<u32> = state.irqchips.iter().map(|c| c.chip_id).collect();
    if found != CHIPS {
        return Err(VmStateError::Chips { found });
    }
    for chip in &state.irqchips {
        vm.set_irqchip(chip)
            .map_err(kvm(format!("KVM_SET_IRQCHIP (chip {})", chip.chip_id)))?;
    }
    vm.set_pit2(&state.pit).map_err(kvm("KVM_SET_PIT2"))
}

/// Sets the KVM clock of `vm` to the saved one: call it right before the
/// vCPUs resume. Only the clock value is given back (the flags KVM
/// reports on read, such as whether the clock is stable, are not input).
pub fn restore_clock(vm: &VmFd, state: &VmState) -> Result<(), VmStateError> {
    let clock = kvm_clock_data {
        clock: state.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM built the way the VMM builds it (irqchip, PIT); `None`, said
    /// as skipped, without /dev/kvm.
    fn vm_on_kvm() -> Option<VmFd> {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("SKIPPED: /dev/kvm not available");
            return None;
        };
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        crate::arch::pit::create(&vm).unwrap();
        Some(vm)
    }

    #[test]
    fn the_controllers_and_the_clock_move_to_a_fresh_vm() {
        let Some(vm) = vm_on_kvm() else {
            return;
        };
        // Something a guest would have programmed: an IOAPIC route.
        let mut ioapic = kvm_irqchip {
            chip_id: KVM_IRQCHIP_IOAPIC,
            ..Default::default()
        };
        vm.get_irqchip(&mut ioapic).unwrap();
        // SAFETY: chip_id is the IOAPIC, so the union holds its state.
        unsafe {
            ioapic.chip.ioapic.redirtbl[4].bits = 0x0000_0000_0000_0031;
        }
        vm.set_irqchip(&ioapic).unwrap();
        // A guest that has run for 1000 s.
        vm.set_clock(&kvm_clock_data {
            clock: 1_000_000_000_000,
            ..Default::default()
        })
        .unwrap();
        let saved = capture(&vm).unwrap();
        let file = tempfile::tempdir().unwrap();
        let path = file.path().join("vm");
        super::super::state_file::write(&path, &saved).unwrap();
        let read: VmState = super::super::state_file::read(&path).unwrap();

        let fresh = vm_on_kvm().unwrap();
        restore_devices(&fresh, &read).unwrap();
        restore_clock(&fresh, &read).unwrap();
        let again = capture(&fresh).unwrap();
        let mut moved = kvm_irqchip {
            chip_id: KVM_IRQCHIP_IOAPIC,
            ..Default::default()
        };
        fresh.get_irqchip(&mut moved).unwrap();
        // SAFETY: as above.
        let bits = unsafe { moved.chip.ioapic.redirtbl[4].bits };
        assert_eq!(bits, 0x31, "the guest's IOAPIC route came along");
        // The clock goes on from the saved value, not from zero.
        assert!(again.clock.clock >= saved.clock.clock);
        assert!(saved.clock.clock >= 1_000_000_000_000);
    }

    #[test]
    fn a_state_without_its_three_chips_is_refused() {
        let Some(vm) = vm_on_kvm() else {
            return;
        };
        let mut state = capture(&vm).unwrap();
        state.irqchips.pop();
        assert!(matches!(
            restore_devices(&vm, &state),
            Err(VmStateError::Chips { .. })
        ));
    }
}
