//! The PCI slot map of a VM: which slot of the root bus holds what. The one
//! place slot numbers are written; the checks below hold them together at
//! compile time.
//!
//! | slots | what | plugged by |
//! |-------|------|------------|
//! | 0 | host bridge (Q35 MCH ids) | the root bus itself |
//! | 1 | virtio-vsock | at build, always there |
//! | [`SCSI`] (2..=5) | virtio-scsi controller 0..=3, in index order | the SCSI manager |
//! | [`DYNAMIC`] (6..=31) | virtio-pmem, virtio-net, virtio-fs: first free slot | their managers |
//!
//! Every slot from the first SCSI slot up ([`HOTPLUG`]) is hot-pluggable:
//! the DSDT declares it with `_ADR`, `_SUN` and `_EJ0`. SCSI controllers
//! sit in slot order because the guest agent numbers virtio-scsi hosts by
//! PCI address, so controller `i` is always host `i`.

use std::ops::RangeInclusive;

use uvm_api::config::MAX_SCSI_CONTROLLERS;
use uvm_devices::pci::SLOT_COUNT;

/// The host bridge.
pub const HOST_BRIDGE: u8 = 0;
/// The virtio-vsock function.
pub const VSOCK: u8 = 1;
/// Last slot on the bus.
const LAST: u8 = (SLOT_COUNT - 1) as u8;
/// Slot of SCSI controller 0; controller `i` is in `SCSI.start() + i`.
pub const SCSI: RangeInclusive<u8> = (VSOCK + 1)..=(VSOCK + MAX_SCSI_CONTROLLERS);
/// Slots VPMem devices, NICs and shares take, lowest free first.
pub const DYNAMIC: RangeInclusive<u8> = (*SCSI.end() + 1)..=LAST;
/// Slots the DSDT declares hot-pluggable.
pub const HOTPLUG: RangeInclusive<u8> = *SCSI.start()..=LAST;

const _: () = {
    assert!(HOST_BRIDGE == 0, "Linux expects the host bridge at 00.0");
    assert!(VSOCK > HOST_BRIDGE);
    assert!(MAX_SCSI_CONTROLLERS > 0);
    assert!(*SCSI.start() == VSOCK + 1, "SCSI slots follow vsock");
    assert!(
        *SCSI.end() - *SCSI.start() + 1 == MAX_SCSI_CONTROLLERS,
        "one slot per SCSI controller the contract allows"
    );
    assert!(*DYNAMIC.start() == *SCSI.end() + 1, "no gap, no overlap");
    assert!(
        *DYNAMIC.start() <= *DYNAMIC.end(),
        "room for dynamic devices"
    );
    assert!(*HOTPLUG.start() == *SCSI.start() && *HOTPLUG.end() == LAST);
};

/// The slot of SCSI controller `index`, if the contract allows that index.
pub fn scsi(index: u8) -> Option<u8> {
    (index < MAX_SCSI_CONTROLLERS).then(|| *SCSI.start() + index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_where_the_guest_and_the_dsdt_expect_them() {
        assert_eq!(SCSI, 2..=5);
        assert_eq!(DYNAMIC, 6..=31);
        assert_eq!(HOTPLUG, 2..=31);
        assert_eq!(scsi(0), Some(2));
        assert_eq!(scsi(MAX_SCSI_CONTROLLERS), None);
    }
}
