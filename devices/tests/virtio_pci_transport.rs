//! The virtio-pci transport driven through BAR and config-space accesses
//! exactly like Linux's virtio_pci_modern driver.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use std::sync::Arc;

use uvm_devices::ioevent::RecordingIoEvents;
use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::vsock::packet::{HDR_SIZE, Header, op};
use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

/// A vsock device for guest CID `cid` on a fresh host side.
fn vsock(cid: u64) -> Box<VsockDevice> {
    Box::new(VsockDevice::new(
        cid,
        VsockHost::new(cid).backend(),
        &tokio::runtime::Handle::current(),
    ))
}

fn machine() -> Machine {
    Machine::new(vsock(3))
}

/// A REQUEST to a port nobody listens on: the device answers RST.
fn send_request(m: &Machine, tx: &mut GuestQueue) {
    let mem = m.mem();
    let h = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 5000,
        dst_port: 9999,
        type_: 1,
        op: op::REQUEST,
        buf_alloc: 4096,
        ..Header::default()
    };
    let a = tx.alloc(HDR_SIZE as u32);
    mem.write_slice(&h.to_bytes(), GuestAddress(a)).unwrap();
    tx.add(&mem, &[(a, HDR_SIZE as u32, false)]).unwrap();
    m.notify(tx);
}

fn add_rx(m: &Machine, rx: &mut GuestQueue, n: usize) {
    let mem = m.mem();
    for _ in 0..n {
        let a = rx.alloc(4096);
        rx.add(&mem, &[(a, 4096, true)]).unwrap();
    }
    m.notify(rx);
}

#[tokio::test]
async fn linux_style_bring_up_and_msix_interrupts() {
    let m = machine();
    // Identity: modern virtio device id 0x1040 + 19.
    assert_eq!(m.cfg_read(0x02, 2), 0x1053);
    assert_eq!(m.cfg_read(0x08, 1), 1); // revision 1
    let caps = m.probe();
    assert_eq!(caps.notify_mult, 4);
    assert_eq!(caps.msix_size, 4);
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    // Device config: guest CID 3, read as two dwords like virtio_cread64 does.
    let lo = m.read(caps.device, 4);
    let hi = m.read(caps.device + 4, 4);
    assert_eq!(lo | (hi << 32), 3);
    assert_eq!(m.read(caps.common + 0x12, 2), 3); // num_queues
    m.write(caps.common + 0x10, 2, 0); // config vector 0
    assert_eq!(m.read(caps.common + 0x10, 2), 0);
    let mut rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    let _ev = m.setup_queue(&caps, 2, 64, 3);
    m.driver_ok(&caps);
    assert_eq!(m.status(&caps), 0x0f);
    // Queue addresses read back after the fact.
    m.write(caps.common + 0x16, 2, 1);
    assert_eq!(m.read(caps.common + 0x20, 4), tx.desc);
    assert_eq!(m.read(caps.common + 0x1c, 2), 1);

    add_rx(&m, &mut rx, 4);
    assert!(m.msi.take().is_empty());
    send_request(&m, &mut tx);
    let msgs = m.msi.take();
    assert!(msgs.contains(&(MSI_ADDR, 0x22)), "{msgs:?}"); // tx used
    assert!(msgs.contains(&(MSI_ADDR, 0x21)), "{msgs:?}"); // rx used (the RST)
    let mem = m.mem();
    let used = rx.take_used(&mem);
    assert_eq!(used.len(), 1);
    let mut raw = [0u8; HDR_SIZE];
    mem.read_slice(&mut raw, GuestAddress(used[0].2[0].0))
        .unwrap();
    let h = Header::from_bytes(&raw);
    assert_eq!(
        (h.op, h.src_port, h.dst_port, h.dst_cid),
        (op::RST, 9999, 5000, 3)
    );
    assert_eq!(tx.take_used(&mem).len(), 1);
    assert_eq!(m.intx.count(), 0);
    // The notify address the VMM would give to an ioeventfd.
    let addr = m.function.lock().notify_address(1).unwrap();
    assert_eq!(addr, m.bar0 + tx.notify);
}

#[tokio::test]
async fn negotiation_requires_version_1() {
    let m = machine();
    let caps = m.probe();
    assert!(!m.negotiate(&caps, 0));
    assert_eq!(m.status(&caps) & 8, 0);
    // DRIVER_OK without FEATURES_OK breaks the device.
    m.set_status(&caps, 3 | 4);
    assert!(m.status(&caps) & 0x40 != 0);
    // Reset recovers; bits cannot be cleared without a reset.
    assert!(m.negotiate(&caps, u64::MAX));
    assert_eq!(m.status(&caps), 0x0b);
    m.set_status(&caps, 0x01);
    assert_eq!(m.status(&caps), 0x0b);
    // Features beyond the offer are refused.
    m.set_status(&caps, 0);
    m.set_status(&caps, 3);
    m.write(caps.common + 8, 4, 1);
    m.write(caps.common + 0xc, 4, 1 | 2);
    m.set_status(&caps, 3 | 8);
    assert_eq!(m.status(&caps) & 8, 0);
}

#[tokio::test]
async fn msix_masking_sets_pending_and_unmask_delivers() {
    let m = machine();
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    m.driver_ok(&caps);
    add_rx(&m, &mut rx, 4);
    // Mask vector 2 (tx).
    m.write(caps.msix_table + 2 * 16 + 12, 4, 1);
    send_request(&m, &mut tx);
    let msgs = m.msi.take();
    assert!(!msgs.contains(&(MSI_ADDR, 0x22)));
    assert!(msgs.contains(&(MSI_ADDR, 0x21)));
    assert_eq!(m.read(caps.msix_pba, 8) & 0b100, 0b100);
    // Table reads back what was programmed.
    assert_eq!(m.read(caps.msix_table + 2 * 16 + 8, 4), 0x22);
    assert_eq!(m.read(caps.msix_table + 2 * 16 + 12, 4), 1);
    m.write(caps.msix_table + 2 * 16 + 12, 4, 0);
    assert_eq!(m.msi.take(), vec![(MSI_ADDR, 0x22)]);
    assert_eq!(m.read(caps.msix_pba, 8), 0);
    // Function mask holds everything back until cleared.
    let ctrl = m.cfg_read(caps.msix_cap + 2, 2);
    m.cfg_write(caps.msix_cap + 2, 2, ctrl | 0x4000);
    send_request(&m, &mut tx);
    assert!(m.msi.take().is_empty());
    assert_eq!(m.read(caps.msix_pba, 8) & 0b110, 0b110);
    m.cfg_write(caps.msix_cap + 2, 2, ctrl);
    let mut msgs = m.msi.take();
    msgs.sort();
    assert_eq!(msgs, vec![(MSI_ADDR, 0x21), (MSI_ADDR, 0x22)]);
    // A vector beyond the table reads back as NO_VECTOR.
    m.write(caps.common + 0x10, 2, 99);
    assert_eq!(m.read(caps.common + 0x10, 2), 0xffff);
}

#[tokio::test]
async fn intx_and_isr_without_msix() {
    let m = machine();
    let caps = m.probe();
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 64, 0xffff);
    let mut tx = m.setup_queue(&caps, 1, 64, 0xffff);
    m.driver_ok(&caps);
    add_rx(&m, &mut rx, 2);
    send_request(&m, &mut tx);
    assert!(m.intx.count() >= 1);
    assert!(m.msi.take().is_empty());
    assert_eq!(m.read(caps.isr, 1), 1);
    assert_eq!(m.read(caps.isr, 1), 0); // read clears
    assert_eq!(m.cfg_read(0x3d, 1), 1); // INTA#
}

#[tokio::test]
async fn queue_outside_memory_marks_device_broken_then_reset_recovers() {
    let m = machine();
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    m.write(caps.common + 0x10, 2, 0);
    let _rx = m.setup_queue(&caps, 0, 64, 1);
    let _tx = m.setup_queue(&caps, 1, 64, 2);
    // Move the tx descriptor table beyond guest memory.
    m.write(caps.common + 0x16, 2, 1);
    m.write(caps.common + 0x20, 4, 0x4000_0000);
    m.driver_ok(&caps);
    assert_eq!(m.status(&caps) & 0x40, 0x40);
    assert!(m.msi.take().contains(&(MSI_ADDR, 0x20))); // config change
    assert!(!m.function.lock().is_active());
    // Writes after DRIVER_OK to queue registers are ignored.
    m.write(caps.common + 0x20, 4, 0x10000);
    assert_eq!(m.read(caps.common + 0x20, 4), 0x4000_0000);
    // Reset and a proper bring-up work.
    m.set_status(&caps, 0);
    assert_eq!(m.status(&caps), 0);
    assert_eq!(m.read(caps.common + 0x1c, 2), 0);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    m.driver_ok(&caps);
    assert_eq!(m.status(&caps), 0x0f);
    add_rx(&m, &mut rx, 1);
    send_request(&m, &mut tx);
    assert_eq!(rx.take_used(&m.mem()).len(), 1);
}

#[tokio::test]
async fn bad_avail_index_marks_broken() {
    let m = machine();
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let _rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    m.driver_ok(&caps);
    let mem = m.mem();
    tx.set_avail_idx(&mem, 200); // more than the queue size ahead
    m.notify(&tx);
    assert_eq!(m.status(&caps) & 0x40, 0x40);
    // Further notifications are ignored, not fatal.
    m.notify(&tx);
    let _ = mem.read_obj::<u16>(GuestAddress(tx.used + 2)).unwrap();
}

#[tokio::test]
async fn driver_features_are_frozen_once_features_ok_is_set() {
    let m = machine();
    let caps = m.probe();
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    // A driver (or a hostile guest) rewrites the upper feature word after
    // FEATURES_OK: the negotiated set must not change (virtio 1.x 3.1.1).
    m.write(caps.common + 8, 4, 1);
    m.write(caps.common + 0xc, 4, 0);
    m.write(caps.common + 8, 4, 1);
    assert_eq!(
        m.read(caps.common + 0xc, 4),
        1,
        "VERSION_1 was dropped after FEATURES_OK"
    );
}

fn worker_machine(ioevents: &Arc<RecordingIoEvents>) -> Machine {
    Machine::with_worker(vsock(3), ioevents.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_the_queues_and_its_kicks_follow_the_driver() {
    let ioevents = Arc::new(RecordingIoEvents::default());
    let m = worker_machine(&ioevents);
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    assert!(
        ioevents.addresses().is_empty(),
        "kicks tied before DRIVER_OK"
    );
    m.driver_ok(&caps);
    assert!(m.function.lock().has_worker());
    // Queues 0 and 1 are enabled, queue 2 is not: two kicks tied, at the
    // notify addresses.
    assert_eq!(
        ioevents.addresses(),
        vec![m.bar0 + rx.notify, m.bar0 + tx.notify]
    );
    // The MMIO path (no ioeventfd fired) reaches the worker too.
    add_rx(&m, &mut rx, 4);
    send_request(&m, &mut tx);
    wait_until("the RST on the worker", || {
        let mem = m.mem();
        rx.used_idx(&mem) == 1
    });
    // A kick written like KVM would (the ioeventfd) is served as well.
    send_request_without_notify(&m, &mut tx);
    let fd = ioevents.fd_at(m.bar0 + tx.notify).unwrap();
    kick_raw(fd);
    wait_until("the second RST", || {
        let mem = m.mem();
        rx.used_idx(&mem) == 2
    });
    // Reset unties every kick and stops the worker.
    m.set_status(&caps, 0);
    assert!(ioevents.addresses().is_empty());
    assert!(!m.function.lock().has_worker());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_serves_nothing_until_resume() {
    use uvm_devices::quiesce::Pausable;
    let ioevents = Arc::new(RecordingIoEvents::default());
    let m = worker_machine(&ioevents);
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    m.driver_ok(&caps);
    add_rx(&m, &mut rx, 4);
    m.function.lock().pause().unwrap();
    send_request(&m, &mut tx);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mem = m.mem();
    assert_eq!(rx.used_idx(&mem), 0, "guest memory written while paused");
    assert_eq!(tx.used_idx(&mem), 0, "a queue was served while paused");
    m.function.lock().resume().unwrap();
    wait_until("the RST after resume", || {
        let mem = m.mem();
        rx.used_idx(&mem) == 1
    });
    // Dropping the function (unplug, stop) unties the kicks.
    drop(m);
    assert!(ioevents.addresses().is_empty());
}

/// Puts a REQUEST in `tx` without notifying.
fn send_request_without_notify(m: &Machine, tx: &mut GuestQueue) {
    let mem = m.mem();
    let h = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 5001,
        dst_port: 9999,
        type_: 1,
        op: op::REQUEST,
        buf_alloc: 4096,
        ..Header::default()
    };
    let a = tx.alloc(HDR_SIZE as u32);
    mem.write_slice(&h.to_bytes(), GuestAddress(a)).unwrap();
    tx.add(&mem, &[(a, HDR_SIZE as u32, false)]).unwrap();
}

/// Signals an eventfd by its raw fd, as KVM does for a matched write.
fn kick_raw(fd: std::os::fd::RawFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `fd` is an open eventfd owned by the device worker for the
    // duration of the test; the 8-byte buffer is valid.
    let n = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    assert_eq!(n, 8);
}

/// A device with one queue whose handler waits at a gate (a disk that
/// takes its time), to see who waits for it.
struct SlowDevice {
    gate: Arc<parking_lot::Mutex<()>>,
    served: Arc<std::sync::atomic::AtomicUsize>,
}

struct SlowQueues {
    gate: Arc<parking_lot::Mutex<()>>,
    served: Arc<std::sync::atomic::AtomicUsize>,
}

impl uvm_devices::virtio::QueueHandler for SlowQueues {
    fn handle_queue(&self, _queue: u16) -> Result<(), uvm_devices::virtio::DeviceError> {
        let _wait = self.gate.lock();
        self.served
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl uvm_devices::virtio::VirtioDevice for SlowDevice {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![16]
    }
    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn ack_features(&mut self, _features: u64) {}
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        _ctx: uvm_devices::virtio::ActivateContext,
    ) -> Result<(), uvm_devices::virtio::DeviceError> {
        Ok(())
    }
    fn reset(&mut self) {
        // A real device takes its run-state lock here, which its handler
        // holds across the request: the transport must not get here while
        // the handler runs.
        let _wait = self.gate.lock();
    }
    fn queue_handler(&self) -> Arc<dyn uvm_devices::virtio::QueueHandler> {
        Arc::new(SlowQueues {
            gate: self.gate.clone(),
            served: self.served.clone(),
        })
    }
}

impl uvm_devices::quiesce::Pausable for SlowDevice {
    fn pause(&mut self) -> Result<(), uvm_devices::quiesce::PauseError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), uvm_devices::quiesce::PauseError> {
        Ok(())
    }
}

impl uvm_devices::snapshot::Snapshottable for SlowDevice {}

#[test]
fn a_reset_never_waits_for_a_request_in_flight() {
    let gate = Arc::new(parking_lot::Mutex::new(()));
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ioevents = Arc::new(RecordingIoEvents::default());
    let m = Machine::with_worker(
        Box::new(SlowDevice {
            gate: gate.clone(),
            served: served.clone(),
        }),
        ioevents.clone(),
    );
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let q = m.setup_queue(&caps, 0, 16, 1);
    m.driver_ok(&caps);
    assert_eq!(m.status(&caps), 0x0f);
    // The request takes as long as the test holds the gate.
    let held = gate.lock();
    m.notify(&q);
    std::thread::sleep(std::time::Duration::from_millis(30));
    // The driver resets (a vCPU writes status 0): the write comes back at
    // once, and the status reads non-zero while the request runs.
    let start = std::time::Instant::now();
    m.set_status(&caps, 0);
    let status = m.status(&caps);
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "the reset waited {:?} for the request",
        start.elapsed()
    );
    assert_ne!(status, 0, "the reset completed while a request ran");
    assert!(
        ioevents.addresses().is_empty(),
        "kicks stay tied during a reset"
    );
    // Queue writes are refused until the reset completes.
    m.write(caps.common + 0x16, 2, 0);
    drop(held);
    wait_until("the reset to complete", || m.status(&caps) == 0);
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The device comes up again.
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let _q = m.setup_queue(&caps, 0, 16, 1);
    m.driver_ok(&caps);
    assert_eq!(m.status(&caps), 0x0f);
    assert_eq!(ioevents.addresses().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_vsock_device_resets_the_guests_connections_and_serves_its_rings() {
    use uvm_devices::quiesce::Pausable;
    use uvm_devices::snapshot::{Snapshottable, StateError};
    let m = machine();
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let mut rx = m.setup_queue(&caps, 0, 64, 1);
    let mut tx = m.setup_queue(&caps, 1, 64, 2);
    let mut ev = m.setup_queue(&caps, 2, 16, 3);
    m.driver_ok(&caps);
    let event_buffer = ev.alloc(4);
    ev.add(&m.mem(), &[(event_buffer, 4, true)]).unwrap();
    m.notify(&ev);
    // One request answered before the snapshot, so the rings have moved.
    add_rx(&m, &mut rx, 4);
    send_request(&m, &mut tx);
    assert_eq!(rx.used_idx(&m.mem()), 1);
    m.mem()
        .write_slice(&[0xff; 4], GuestAddress(event_buffer))
        .unwrap();

    let b = restored(&m, vsock(3));
    let mem = b.mem();
    let used = ev.take_used(&mem);
    assert_eq!(used.len(), 1, "one transport-reset event");
    assert_eq!(used[0].1, 4);
    let mut id = [0u8; 4];
    mem.read_slice(&mut id, GuestAddress(event_buffer)).unwrap();
    assert_eq!(
        u32::from_le_bytes(id),
        0,
        "VIRTIO_VSOCK_EVENT_TRANSPORT_RESET"
    );
    // The restored device reads the next request where the old one stopped.
    send_request(&b, &mut tx);
    wait_until("the RST from the restored device", || {
        rx.used_idx(&b.mem()) == 2
    });

    // A device for another guest CID is not this state's.
    let state = m.function.lock().save_state().unwrap();
    let other = Machine::new(vsock(4));
    other.function.lock().pause().unwrap();
    assert!(matches!(
        other.function.lock().restore_state(&state),
        Err(StateError::Invalid(_))
    ));
}
