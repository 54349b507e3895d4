//! [`GuestView`]: the devices the simulated guest sees.

use uvm_api::{GuestBlockDevice, GuestNic, GuestPmem, GuestShare, State};

use super::naming::{nic_name, pmem_name};
use crate::fake::machine::Machine;

/// A snapshot of the devices the simulated guest sees, from
/// [`crate::FakeUvm::guest_view`].
///
/// Before `start` it lists the boot configuration (what the guest will find
/// when it boots); while running or paused, what the guest has now,
/// including devices whose removal it has not yet acknowledged; once
/// stopped it is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestView {
    /// SCSI disks, by (controller, LUN).
    pub block_devices: Vec<GuestBlockDevice>,
    /// Persistent-memory devices, by slot.
    pub pmem_devices: Vec<GuestPmem>,
    /// Network interfaces, by name.
    pub nics: Vec<GuestNic>,
    /// Shared folders (virtio-fs, then 9p, then VSMB; by name in each).
    pub shares: Vec<GuestShare>,
}

/// What the guest of a VM in `state` with machine `m` sees.
pub(crate) fn guest_view(m: &Machine, state: State) -> GuestView {
    if state == State::Stopped {
        return GuestView::default();
    }
    let block_devices = m
        .scsi
        .disks
        .iter_visible()
        .map(|(&(c, l), d)| GuestBlockDevice {
            name: d.name.clone(),
            size_bytes: d.size,
            scsi_address: Some((c, l)),
            read_only: d.spec.read_only,
        })
        .collect();
    let pmem_devices = m
        .vpmem
        .devices
        .iter_visible()
        .map(|(id, p)| GuestPmem {
            name: pmem_name(*id),
            size_bytes: p.size,
        })
        .collect();
    let mut nics: Vec<(usize, GuestNic)> = m
        .nics
        .nics
        .iter_visible()
        .map(|(_, n)| {
            (
                n.index,
                GuestNic {
                    name: nic_name(n.index),
                    mac: n.spec.mac,
                    link_up: true,
                },
            )
        })
        .collect();
    nics.sort_by_key(|(i, _)| *i);
    let shares = m
        .shares
        .shares
        .iter_visible()
        .map(|(_, s)| GuestShare {
            tag: s.name.clone(),
            read_only: s.read_only,
        })
        .collect();
    GuestView {
        block_devices,
        pmem_devices,
        nics: nics.into_iter().map(|(_, n)| n).collect(),
        shares,
    }
}
