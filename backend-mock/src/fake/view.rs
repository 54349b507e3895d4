//! What the simulated guest sees, and how it names devices.

use uvm_api::{GuestBlockDevice, GuestNic, GuestPmem, GuestShare, State};

use super::machine::Machine;

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

pub(crate) fn guest_view(m: &Machine) -> GuestView {
    if m.state == State::Stopped {
        return GuestView::default();
    }
    let block_devices = m
        .scsi
        .disks
        .visible()
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
        .visible()
        .map(|(id, p)| GuestPmem {
            name: pmem_name(*id),
            size_bytes: p.size,
        })
        .collect();
    let mut nics: Vec<(usize, GuestNic)> = m
        .nics
        .nics
        .visible()
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
        .visible()
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

/// The Linux name of the `index`-th SCSI disk: sda..sdz, sdaa, sdab, ...
pub(crate) fn disk_name(index: usize) -> String {
    let mut n = index + 1;
    let mut letters = Vec::new();
    while n > 0 {
        n -= 1;
        letters.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    letters.iter().rev().fold(String::from("sd"), |mut s, c| {
        s.push(*c);
        s
    })
}

/// The index of a Linux SCSI disk name (`sda` is 0), the inverse of [`disk_name`].
pub(crate) fn disk_index(name: &str) -> Option<usize> {
    let letters = name.strip_prefix("sd").filter(|l| !l.is_empty())?;
    let mut n: usize = 0;
    for c in letters.bytes() {
        if !c.is_ascii_lowercase() {
            return None;
        }
        n = n.checked_mul(26)?.checked_add(usize::from(c - b'a') + 1)?;
    }
    n.checked_sub(1)
}

/// The Linux name of the interface numbered `index`.
pub(crate) fn nic_name(index: usize) -> String {
    format!("eth{index}")
}

/// The Linux name of the persistent-memory device in slot `id`.
pub(crate) fn pmem_name(id: u32) -> String {
    format!("pmem{id}")
}

/// The lowest index not in `used`.
pub(crate) fn lowest_free(used: impl IntoIterator<Item = usize>) -> usize {
    let mut used: Vec<usize> = used.into_iter().collect();
    used.sort_unstable();
    used.dedup();
    used.iter()
        .enumerate()
        .find(|(i, u)| i != *u)
        .map_or(used.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_disk_names() {
        assert_eq!(disk_name(0), "sda");
        assert_eq!(disk_name(25), "sdz");
        assert_eq!(disk_name(26), "sdaa");
        assert_eq!(disk_name(27), "sdab");
        assert_eq!(disk_name(26 + 26 * 26), "sdaaa");
        for i in [0, 1, 25, 26, 27, 701, 702, 5000] {
            assert_eq!(disk_index(&disk_name(i)), Some(i));
        }
        assert_eq!(disk_index("sd"), None);
        assert_eq!(disk_index("hda"), None);
        assert_eq!(disk_index("sdA"), None);
    }

    #[test]
    fn lowest_free_fills_holes() {
        assert_eq!(lowest_free([]), 0);
        assert_eq!(lowest_free([0, 1, 2]), 3);
        assert_eq!(lowest_free([2, 0, 3]), 1);
        assert_eq!(lowest_free([1, 1]), 0);
    }
}
