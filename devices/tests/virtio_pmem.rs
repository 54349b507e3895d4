//! virtio-pmem through the virtio-pci transport: configuration and flush
//! requests as the Linux virtio_pmem driver sends them.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use std::fs::File;
use std::os::fd::OwnedFd;

use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::pmem::{PmemDevice, RESP_EIO, RESP_OK};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

const START: u64 = 0x1_0000_0000;
const SIZE: u64 = 64 << 20;

struct Guest {
    m: Machine,
    caps: Caps,
    q: GuestQueue,
}

impl Guest {
    fn new(file: File, read_only: bool) -> Self {
        let m = Machine::new(Box::new(PmemDevice::new(file, read_only, START, SIZE)));
        let caps = m.probe();
        m.enable_msix(&caps);
        assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
        let q = m.setup_queue(&caps, 0, 64, 1);
        m.driver_ok(&caps);
        Guest { m, caps, q }
    }

    /// Sends `req` with a `resp_len`-byte response buffer; returns (used len, ret).
    fn request(&mut self, req: &[u8], resp_len: u32) -> (u32, u32) {
        let mem = self.m.mem();
        let a = self.q.alloc(req.len() as u32);
        mem.write_slice(req, GuestAddress(a)).unwrap();
        let r = self.q.alloc(resp_len);
        mem.write_obj(0xffff_ffffu32, GuestAddress(r)).unwrap();
        let mut bufs = vec![(r, resp_len, true)];
        if !req.is_empty() {
            bufs.insert(0, (a, req.len() as u32, false));
        }
        self.q.add(&mem, &bufs).unwrap();
        self.m.notify(&self.q);
        let used = self.q.take_used(&mem);
        assert_eq!(used.len(), 1);
        (used[0].1, mem.read_obj(GuestAddress(r)).unwrap())
    }
}

#[test]
fn config_holds_the_region() {
    let f = tempfile::tempfile().unwrap();
    let g = Guest::new(f, false);
    assert_eq!(g.m.read(g.caps.device, 8), START);
    assert_eq!(g.m.read(g.caps.device + 8, 8), SIZE);
    assert_eq!(g.m.read(g.caps.device + 16, 4), 0);
    assert_eq!(g.m.cfg_read(0x02, 2), 0x1040 + 27);
}

#[test]
fn flush_requests() {
    let f = tempfile::tempfile().unwrap();
    f.set_len(1 << 20).unwrap();
    let mut g = Guest::new(f, false);
    assert_eq!(g.request(&0u32.to_le_bytes(), 4), (4, RESP_OK));
    assert!(g.m.msi.take().contains(&(MSI_ADDR, 0x21)));
    assert_eq!(
        g.request(&7u32.to_le_bytes(), 4),
        (4, RESP_EIO),
        "unknown type"
    );
    assert_eq!(g.request(&[0, 0], 4), (4, RESP_EIO), "truncated request");
    assert_eq!(g.request(&[], 4), (4, RESP_EIO), "no request at all");
    assert_eq!(g.m.status(&g.caps), 0x0f);
    // No room for the response: the device breaks, a reset recovers it.
    let mem = g.m.mem();
    let a = g.q.alloc(4);
    g.q.add(&mem, &[(a, 4, false)]).unwrap();
    g.m.notify(&g.q);
    assert_eq!(g.m.status(&g.caps) & 0x40, 0x40);
}

#[test]
fn read_only_flush_succeeds_and_failed_sync_is_eio() {
    let f = tempfile::tempfile().unwrap();
    let mut g = Guest::new(f, true);
    assert_eq!(g.request(&0u32.to_le_bytes(), 4), (4, RESP_OK));

    // fdatasync on a pipe fails (EINVAL): the guest gets EIO.
    let (_r, w) = std::io::pipe().unwrap();
    let mut g = Guest::new(File::from(OwnedFd::from(w)), false);
    assert_eq!(g.request(&0u32.to_le_bytes(), 4), (4, RESP_EIO));
}

#[test]
fn a_restored_pmem_device_answers_where_the_old_one_stopped() {
    let f = tempfile::tempfile().unwrap();
    f.set_len(1 << 20).unwrap();
    let again = f.try_clone().unwrap();
    let mut g = Guest::new(f, false);
    assert_eq!(g.request(&0u32.to_le_bytes(), 4), (4, RESP_OK));
    g.m = restored(&g.m, Box::new(PmemDevice::new(again, false, START, SIZE)));
    assert_eq!(g.request(&0u32.to_le_bytes(), 4), (4, RESP_OK));
    assert_eq!(g.m.status(&g.caps), 0x0f);
}

#[test]
fn a_pmem_state_needs_the_same_window() {
    use uvm_devices::quiesce::Pausable;
    use uvm_devices::snapshot::{Snapshottable, StateError};
    let f = tempfile::tempfile().unwrap();
    let g = Guest::new(f.try_clone().unwrap(), false);
    g.m.function.lock().pause().unwrap();
    let state = g.m.function.lock().save_state().unwrap();
    for (start, read_only) in [(START + SIZE, false), (START, true)] {
        let other = Machine::new(Box::new(PmemDevice::new(
            f.try_clone().unwrap(),
            read_only,
            start,
            SIZE,
        )));
        other.function.lock().pause().unwrap();
        assert!(matches!(
            other.function.lock().restore_state(&state),
            Err(StateError::Invalid(_))
        ));
    }
}
