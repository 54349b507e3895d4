//! virtio-scsi through the virtio-pci transport, with the test playing the
//! Linux driver: command requests, task management, and LUN hotplug events.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use uvm_devices::quiesce::Pausable;
use uvm_devices::scsi::{DiskImage, ImageKind, ScsiLun};
use uvm_devices::snapshot::Snapshottable;
use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::scsi::config::{ctrl, event, response};
use uvm_devices::virtio::scsi::{ScsiHost, VIRTIO_SCSI_F_HOTPLUG, VirtioScsiDevice};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

const MIB: u64 = 1 << 20;
const REQ: u32 = 19 + 32;
const RESP: u32 = 12 + 96;

struct Resp {
    sense_len: u32,
    resid: u32,
    status: u8,
    response: u8,
    sense: Vec<u8>,
    data: Vec<u8>,
    used_len: u32,
}

struct Guest {
    m: Machine,
    caps: Caps,
    host: ScsiHost,
    ctl: GuestQueue,
    ev: GuestQueue,
    req: GuestQueue,
}

fn image(len: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(len).unwrap();
    f
}

fn disk(f: &tempfile::NamedTempFile, ro: bool) -> ScsiLun {
    ScsiLun::new(
        DiskImage::open(f.path(), ImageKind::Raw, ro).unwrap(),
        "virtio-serial",
    )
}

fn lun_field(lun: u16) -> [u8; 8] {
    [1, 0, 0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0]
}

impl Guest {
    /// Probes and starts the device; `event_buffers` event buffers posted.
    fn new(host_setup: impl FnOnce(&ScsiHost), features: u64, event_buffers: usize) -> Self {
        let dev = VirtioScsiDevice::new(1);
        let host = dev.host();
        host_setup(&host);
        let m = Machine::new(Box::new(dev));
        let caps = m.probe();
        m.enable_msix(&caps);
        assert!(m.negotiate(&caps, features));
        // Like virtscsi_probe: write cdb_size and sense_size back.
        m.write(caps.device + 24, 4, 32);
        m.write(caps.device + 20, 4, 96);
        let ctl = m.setup_queue(&caps, 0, 128, 1);
        let ev = m.setup_queue(&caps, 1, 128, 2);
        let req = m.setup_queue(&caps, 2, 128, 3);
        m.driver_ok(&caps);
        assert_eq!(m.status(&caps), 0x0f);
        let mut g = Guest {
            m,
            caps,
            host,
            ctl,
            ev,
            req,
        };
        g.post_events(event_buffers);
        g
    }

    fn post_events(&mut self, n: usize) {
        let mem = self.m.mem();
        for _ in 0..n {
            let a = self.ev.alloc(16);
            self.ev.add(&mem, &[(a, 16, true)]).unwrap();
        }
        self.m.notify(&self.ev);
    }

    /// Events the device returned: (buffer address, event, lun, reason).
    fn events(&mut self) -> Vec<(u64, u32, [u8; 8], u32)> {
        let mem = self.m.mem();
        self.ev
            .take_used(&mem)
            .into_iter()
            .map(|(_, len, bufs)| {
                assert_eq!(len, 16);
                let a = bufs[0].0;
                let mut b = [0u8; 16];
                mem.read_slice(&mut b, GuestAddress(a)).unwrap();
                let mut lun = [0u8; 8];
                lun.copy_from_slice(&b[4..12]);
                (
                    a,
                    u32::from_le_bytes(b[0..4].try_into().unwrap()),
                    lun,
                    u32::from_le_bytes(b[12..16].try_into().unwrap()),
                )
            })
            .collect()
    }

    fn repost(&mut self, addr: u64) {
        let mem = self.m.mem();
        self.ev.add(&mem, &[(addr, 16, true)]).unwrap();
        self.m.notify(&self.ev);
    }

    fn cmd_raw(&mut self, lun: [u8; 8], cdb: &[u8], data_out: &[u8], data_in: u32) -> Resp {
        let mem = self.m.mem();
        let mut hdr = vec![0u8; REQ as usize];
        hdr[..8].copy_from_slice(&lun);
        hdr[8..16].copy_from_slice(&0x1234u64.to_le_bytes());
        hdr[19..19 + cdb.len()].copy_from_slice(cdb);
        let h = self.req.alloc(REQ);
        mem.write_slice(&hdr, GuestAddress(h)).unwrap();
        let mut bufs = vec![(h, REQ, false)];
        if !data_out.is_empty() {
            let d = self.req.alloc(data_out.len() as u32);
            mem.write_slice(data_out, GuestAddress(d)).unwrap();
            bufs.push((d, data_out.len() as u32, false));
        }
        let r = self.req.alloc(RESP);
        bufs.push((r, RESP, true));
        let din = self.req.alloc(data_in);
        if data_in > 0 {
            bufs.push((din, data_in, true));
        }
        self.req.add(&mem, &bufs).unwrap();
        self.m.notify(&self.req);
        let used = self.req.take_used(&mem);
        assert_eq!(used.len(), 1, "request completed");
        let used_len = used[0].1;
        let mut rb = vec![0u8; RESP as usize];
        mem.read_slice(&mut rb, GuestAddress(r)).unwrap();
        let sense_len = u32::from_le_bytes(rb[0..4].try_into().unwrap());
        let mut data = vec![0u8; data_in as usize];
        mem.read_slice(&mut data, GuestAddress(din)).unwrap();
        let got = used_len.saturating_sub(RESP) as usize;
        data.truncate(got);
        Resp {
            sense_len,
            resid: u32::from_le_bytes(rb[4..8].try_into().unwrap()),
            status: rb[10],
            response: rb[11],
            sense: rb[12..12 + sense_len.min(96) as usize].to_vec(),
            data,
            used_len,
        }
    }

    fn cmd(&mut self, lun: u16, cdb: &[u8], data_out: &[u8], data_in: u32) -> Resp {
        self.cmd_raw(lun_field(lun), cdb, data_out, data_in)
    }

    fn control(&mut self, req: &[u8], resp_len: u32) -> Vec<u8> {
        let mem = self.m.mem();
        let a = self.ctl.alloc(req.len() as u32);
        mem.write_slice(req, GuestAddress(a)).unwrap();
        let r = self.ctl.alloc(resp_len);
        mem.write_slice(&vec![0xee; resp_len as usize], GuestAddress(r))
            .unwrap();
        self.ctl
            .add(&mem, &[(a, req.len() as u32, false), (r, resp_len, true)])
            .unwrap();
        self.m.notify(&self.ctl);
        let used = self.ctl.take_used(&mem);
        assert_eq!(used.len(), 1);
        let mut out = vec![0u8; used[0].1 as usize];
        mem.read_slice(&mut out, GuestAddress(r)).unwrap();
        out
    }
}

const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_SCSI_F_HOTPLUG;

#[test]
fn config_and_features() {
    let g = Guest::new(|_| {}, FEATURES, 0);
    let c = g.caps.device;
    assert_eq!(g.m.read(c, 4), 1, "num_queues");
    assert_eq!(g.m.read(c + 4, 4), 126, "seg_max");
    assert_eq!(g.m.read(c + 8, 4), 2048, "max_sectors");
    assert_eq!(g.m.read(c + 16, 4), 16, "event_info_size");
    assert_eq!(g.m.read(c + 20, 4), 96, "sense_size");
    assert_eq!(g.m.read(c + 24, 4), 32, "cdb_size");
    assert_eq!(g.m.read(c + 28, 2), 0, "max_channel");
    assert_eq!(g.m.read(c + 30, 2), 0, "max_target");
    assert_eq!(g.m.read(c + 32, 4), 63, "max_lun");
    g.m.write(g.caps.common, 4, 0);
    let f = g.m.read(g.caps.common + 4, 4);
    assert_eq!(f & VIRTIO_SCSI_F_HOTPLUG, VIRTIO_SCSI_F_HOTPLUG);
}

#[test]
fn command_requests_through_the_queue() {
    let f = image(MIB);
    let mut g = Guest::new(|h| h.add_lun(0, disk(&f, false)).unwrap(), FEATURES, 8);

    let inq = g.cmd(0, &[0x12, 0, 0, 0, 96, 0], &[], 96);
    assert_eq!((inq.response, inq.status), (response::OK, 0));
    assert_eq!(inq.data.len(), 36);
    assert_eq!(inq.resid, 96 - 36);
    assert_eq!(inq.used_len, RESP + 36);
    assert_eq!(&inq.data[8..16], b"UVM     ");

    let cap = g.cmd(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8);
    assert_eq!(&cap.data, &[0, 0, 0x07, 0xff, 0, 0, 2, 0]);
    assert_eq!(cap.resid, 0);

    let payload: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    let w = g.cmd(0, &[0x2a, 0, 0, 0, 0, 20, 0, 0, 2, 0], &payload, 0);
    assert_eq!((w.response, w.status, w.resid), (response::OK, 0, 0));
    let mut on_disk = vec![0u8; 1024];
    f.as_file().read_exact_at(&mut on_disk, 20 * 512).unwrap();
    assert_eq!(on_disk, payload);
    let r = g.cmd(0, &[0x28, 0, 0, 0, 0, 20, 0, 0, 2, 0], &[], 1024);
    assert_eq!(r.data, payload);

    // Unknown opcode: CHECK CONDITION with fixed sense in the response.
    let bad = g.cmd(0, &[0xd9, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!((bad.response, bad.status, bad.sense_len), (0, 2, 18));
    assert_eq!((bad.sense[0], bad.sense[2], bad.sense[12]), (0x70, 5, 0x20));

    // Out-of-range LBA.
    let oor = g.cmd(0, &[0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0], &[], 512);
    assert_eq!((oor.status, oor.sense[12]), (2, 0x21));
    assert_eq!(oor.resid, 512);

    // Absent LUN on the target; other targets do not exist.
    let absent = g.cmd(9, &[0; 6], &[], 0);
    assert_eq!(
        (absent.response, absent.status, absent.sense[12]),
        (0, 2, 0x25)
    );
    let inq9 = g.cmd(9, &[0x12, 0, 0, 0, 36, 0], &[], 36);
    assert_eq!(inq9.data[0], 0x7f);
    let other = g.cmd_raw([1, 1, 0x40, 0, 0, 0, 0, 0], &[0; 6], &[], 0);
    assert_eq!(other.response, response::BAD_TARGET);

    // Buffers smaller than the CDB's data phase: OVERRUN.
    let short = g.cmd(0, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 4, 0], &[0; 512], 0);
    assert_eq!(short.response, response::OVERRUN);
    let short_in = g.cmd(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0], &[], 512);
    assert_eq!(short_in.response, response::OVERRUN);
    // The device still works afterwards.
    assert_eq!(g.cmd(0, &[0; 6], &[], 0).status, 0);
    assert_eq!(g.m.status(&g.caps), 0x0f);
}

#[test]
fn a_controller_without_luns_is_a_bad_target() {
    let mut g = Guest::new(|_| {}, FEATURES, 8);
    let r = g.cmd(0, &[0x12, 0, 0, 0, 36, 0], &[], 36);
    assert_eq!(r.response, response::BAD_TARGET);
}

#[test]
fn task_management_and_async_notification_queries() {
    let f = image(MIB);
    let mut g = Guest::new(|h| h.add_lun(2, disk(&f, true)).unwrap(), FEATURES, 8);
    let tmf = |sub: u32, lun: u16| {
        let mut b = Vec::new();
        b.extend_from_slice(&ctrl::T_TMF.to_le_bytes());
        b.extend_from_slice(&sub.to_le_bytes());
        b.extend_from_slice(&lun_field(lun));
        b.extend_from_slice(&7u64.to_le_bytes());
        b
    };
    assert_eq!(g.control(&tmf(ctrl::TMF_LOGICAL_UNIT_RESET, 2), 1), [0]);
    assert_eq!(g.control(&tmf(ctrl::TMF_ABORT_TASK, 2), 1), [0]);
    assert_eq!(g.control(&tmf(ctrl::TMF_I_T_NEXUS_RESET, 0), 1), [0]);
    assert_eq!(
        g.control(&tmf(ctrl::TMF_CLEAR_ACA, 2), 1),
        [response::FUNCTION_REJECTED]
    );
    assert_eq!(
        g.control(&tmf(ctrl::TMF_ABORT_TASK, 4), 1),
        [response::INCORRECT_LUN]
    );
    let mut an = Vec::new();
    an.extend_from_slice(&ctrl::T_AN_QUERY.to_le_bytes());
    an.extend_from_slice(&lun_field(2));
    an.extend_from_slice(&0xffu32.to_le_bytes());
    assert_eq!(g.control(&an, 5), [0, 0, 0, 0, response::OK]);
    assert_eq!(g.control(&[9, 0, 0, 0], 1), [response::FAILURE]);
    assert_eq!(g.m.status(&g.caps), 0x0f);
}

#[test]
fn hot_add_and_remove_deliver_events_and_release() {
    let f = image(MIB);
    let mut g = Guest::new(|_| {}, FEATURES, 8);
    assert!(g.events().is_empty());

    g.host.add_lun(3, disk(&f, false)).unwrap();
    let ev = g.events();
    assert_eq!(ev.len(), 1);
    let (a1, e, lun, reason) = ev[0];
    assert_eq!(e, event::TRANSPORT_RESET);
    assert_eq!(lun, [1, 0, 0, 3, 0, 0, 0, 0]);
    assert_eq!(reason, event::RESET_RESCAN);
    assert!(
        g.m.msi.take().contains(&(MSI_ADDR, 0x22)),
        "event vector fired"
    );
    g.repost(a1);
    // The guest scans the new LUN.
    let rl = g.cmd(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[], 256);
    assert_eq!(&rl.data[..4], &16u32.to_be_bytes());
    assert_eq!(rl.data[8 + 8 + 1], 3);
    assert_eq!(g.cmd(3, &[0; 6], &[], 0).status, 0);

    let release = g.host.remove_lun(3).unwrap();
    let ev = g.events();
    assert_eq!(ev.len(), 1);
    let (a2, e, lun, reason) = ev[0];
    assert_eq!(
        (e, lun[3], reason),
        (event::TRANSPORT_RESET, 3, event::RESET_REMOVED)
    );
    // Detached at once; with no LUN left the target answers BAD_TARGET.
    assert_eq!(g.cmd(3, &[0; 6], &[], 0).response, response::BAD_TARGET);
    assert!(g.host.luns().is_empty());
    assert!(
        !release.is_released(),
        "guest has not handled the event yet"
    );
    // Another buffer coming back does not release it.
    let other = g.ev.alloc(16);
    g.repost(other);
    assert!(!release.is_released());
    // The driver re-posts the buffer after scsi_remove_device.
    g.repost(a2);
    assert!(release.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn events_wait_for_buffers_and_missed_events_are_flagged() {
    let f = image(MIB);
    let mut g = Guest::new(|_| {}, FEATURES, 0);
    g.host.add_lun(1, disk(&f, true)).unwrap();
    let release = g.host.remove_lun(1).unwrap();
    g.host.add_lun(4, disk(&f, true)).unwrap();
    assert_eq!(g.host.pending_events(), 3);
    assert!(g.events().is_empty());
    g.post_events(2);
    let ev = g.events();
    assert_eq!(
        ev.iter().map(|e| (e.2[3], e.3)).collect::<Vec<_>>(),
        vec![(1, event::RESET_RESCAN), (1, event::RESET_REMOVED)]
    );
    assert_eq!(g.host.pending_events(), 1);
    g.post_events(1);
    let ev = g.events();
    assert_eq!((ev[0].2[3], ev[0].3), (4, event::RESET_RESCAN));
    assert!(!release.is_released());

    // Overflow: more than 64 events without buffers.
    for _ in 0..40 {
        g.host.add_lun(10, disk(&f, true)).unwrap();
        g.host.remove_lun(10).unwrap();
    }
    assert_eq!(g.host.pending_events(), 64);
    g.post_events(1);
    let ev = g.events();
    assert_eq!(ev[0].1, event::TRANSPORT_RESET | event::EVENTS_MISSED);

    // A device reset releases everything still pending.
    g.m.set_status(&g.caps, 0);
    assert!(release.is_released());
}

#[test]
fn without_hotplug_or_driver_removal_is_released_at_once() {
    let f = image(MIB);
    let g = Guest::new(|_| {}, VIRTIO_F_VERSION_1, 8);
    g.host.add_lun(1, disk(&f, true)).unwrap();
    assert_eq!(g.host.pending_events(), 0);
    assert!(g.host.remove_lun(1).unwrap().is_released());

    let dev = VirtioScsiDevice::new(1);
    let host = dev.host();
    host.add_lun(0, disk(&f, true)).unwrap();
    assert!(host.remove_lun(0).unwrap().is_released());
}

#[test]
fn luns_are_added_from_another_thread_while_the_guest_runs() {
    let f = image(MIB);
    let path = f.path().to_path_buf();
    let mut g = Guest::new(|_| {}, FEATURES, 8);
    let host = g.host.clone();
    std::thread::spawn(move || {
        for lun in 0..8 {
            let d = ScsiLun::new(DiskImage::open(&path, ImageKind::Raw, true).unwrap(), "t");
            host.add_lun(lun, d).unwrap();
        }
    })
    .join()
    .unwrap();
    let ev = g.events();
    assert_eq!(ev.len(), 8);
    for (i, e) in ev.iter().enumerate() {
        assert_eq!((e.2[3], e.3), (i as u8, event::RESET_RESCAN));
    }
    assert_eq!(g.cmd(7, &[0; 6], &[], 0).status, 0);
}

#[test]
fn a_paused_controller_delivers_no_event_until_resume() {
    let f = image(MIB);
    let mut g = Guest::new(|_| {}, FEATURES, 8);
    g.m.function.lock().pause().unwrap();
    g.host.add_lun(3, disk(&f, false)).unwrap();
    assert!(g.events().is_empty(), "event written while paused");
    assert_eq!(g.host.pending_events(), 1);

    g.m.function.lock().resume().unwrap();
    let ev = g.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].1, ev[0].3),
        (event::TRANSPORT_RESET, event::RESET_RESCAN)
    );
}

/// The guest's controller moved to a new machine with the same LUNs
/// attached again from their files.
fn move_to_a_new_machine(g: &mut Guest, luns: &[(u16, &tempfile::NamedTempFile)]) {
    let dev = VirtioScsiDevice::new(1);
    let host = dev.host();
    for (lun, f) in luns {
        host.add_lun(*lun, disk(f, false)).unwrap();
    }
    g.m = restored(&g.m, Box::new(dev));
    g.host = host;
}

#[test]
fn a_snapshot_carries_queues_luns_and_held_event_buffers_to_a_new_machine() {
    let f = image(MIB);
    let added = image(MIB);
    let mut g = Guest::new(|h| h.add_lun(0, disk(&f, false)).unwrap(), FEATURES, 2);
    let payload: Vec<u8> = (0..512).map(|i| (i % 241) as u8).collect();
    let w = g.cmd(0, &[0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0], &payload, 0);
    assert_eq!((w.response, w.status), (response::OK, 0));
    // The driver's sizes are not the defaults, so they must come along.
    g.m.write(g.caps.device + 20, 4, 64);

    move_to_a_new_machine(&mut g, &[(0, &f)]);

    assert_eq!(g.m.read(g.caps.device + 20, 4), 64, "sense size");
    // Back to the layout this test's requests use.
    g.m.write(g.caps.device + 20, 4, 96);
    // The driver goes on with its own ring state: the next request is
    // read from where the old device stopped, and answered.
    let r = g.cmd(0, &[0x28, 0, 0, 0, 0, 9, 0, 0, 1, 0], &[], 512);
    assert_eq!((r.response, r.status), (response::OK, 0));
    assert_eq!(r.data, payload);
    // A LUN added now is announced in an event buffer the guest posted
    // before the snapshot (it will never post it again).
    g.host.add_lun(1, disk(&added, false)).unwrap();
    let ev = g.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].2, [1, 0, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn a_snapshot_needs_the_same_luns_attached() {
    let f = image(MIB);
    let other = image(2 * MIB);
    let g = Guest::new(|h| h.add_lun(0, disk(&f, false)).unwrap(), FEATURES, 2);
    g.m.function.lock().pause().unwrap();
    let state = g.m.function.lock().save_state().unwrap();
    for luns in [vec![], vec![(0, &other)], vec![(0, &f), (1, &f)]] {
        let dev = VirtioScsiDevice::new(1);
        let host = dev.host();
        for (lun, file) in &luns {
            host.add_lun(*lun, disk(file, false)).unwrap();
        }
        let m = Machine::new(Box::new(dev));
        m.function.lock().pause().unwrap();
        let refused = m.function.lock().restore_state(&state);
        assert!(
            matches!(refused, Err(uvm_devices::snapshot::StateError::Invalid(_))),
            "{} LUNs: {refused:?}",
            luns.len()
        );
        assert!(!m.function.lock().is_active(), "left fresh");
    }
}
