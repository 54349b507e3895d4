//! virtio-fs over vhost-user against a real virtiofsd: negotiation, the
//! data plane (a FUSE_INIT round trip through the request queue), reset and
//! re-activation, and the failure paths (anonymous guest memory, a bad
//! socket, the daemon dying under an active device).
//!
//! Tests that need virtiofsd print a SKIPPED line and pass when it is not
//! installed.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_fs_support;
mod virtio_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uvm_devices::quiesce::Pausable;
use uvm_devices::virtio::fs::{FsError, VIRTIO_ID_FS, VhostUserFs};
use uvm_devices::virtio::{VIRTIO_F_VERSION_1, VirtioDevice, status};
use virtio_fs_support::*;

/// Sends one FUSE_INIT on a device activated over `rings` and checks the
/// reply and the interrupt; returns the reply's error field.
fn fuse_init_round_trip(
    fs: &mut VhostUserFs,
    mem: &uvm_devices::virtio::GuestMemory,
    rings: &Rings,
    irq: &RecordingInterrupt,
    bufs: &InitBuffers,
    unique: u64,
) -> i32 {
    let signals_before = irq.signals_of(1);
    let used_before = rings.used_idx(mem);
    queue_fuse_init(mem, rings, bufs, unique);
    fs.queue_notify(1).unwrap();
    assert!(
        wait_used(mem, rings, used_before.wrapping_add(1)),
        "virtiofsd did not complete the request in time"
    );
    assert!(
        irq.wait_for(TIMEOUT, |r| {
            r.queue_signals.iter().filter(|q| **q == 1).count() > signals_before
        }),
        "no interrupt for the request queue"
    );
    let (head, written) = rings.used_elem(mem, used_before);
    assert_eq!(head, 0, "used entry names the chain's head");
    let (len, error, reply_unique, major, minor) = read_init_reply(mem, bufs);
    assert_eq!(reply_unique, unique);
    assert_eq!(written, len, "used length = fuse_out_header.len");
    if error == 0 {
        assert_eq!(len, OUT_HEADER_LEN + INIT_OUT_LEN);
        assert_eq!(major, 7);
        assert!(minor >= 27, "minor {minor}");
    }
    assert!(irq.needs_reset().is_empty(), "{:?}", irq.needs_reset());
    error
}

#[test]
fn fuse_init_round_trip_through_virtiofsd() {
    let Some(share) = Share::start() else { return };
    let mut fs = share.connect();
    assert_eq!(fs.device_type(), VIRTIO_ID_FS);
    assert_eq!(fs.queue_max_sizes(), vec![256, 256]);
    assert_ne!(fs.device_features() & VIRTIO_F_VERSION_1, 0);
    assert_eq!(
        fs.device_features() & (1 << 30),
        0,
        "VHOST_USER_F_PROTOCOL_FEATURES is not for the guest"
    );
    let mut cfg = [0u8; 40];
    fs.read_config(0, &mut cfg);
    assert_eq!(&cfg[..4], b"myfs");
    assert!(cfg[4..36].iter().all(|b| *b == 0));
    assert_eq!(&cfg[36..], &1u32.to_le_bytes());

    let mem = memfd_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&mem, 0x1_0000);
    fs.ack_features(VIRTIO_F_VERSION_1);
    fs.activate(context(&mem, rings.queues(&mem), &irq))
        .unwrap();
    fs.settle();
    assert!(fs.is_active());

    let bufs = InitBuffers::at(0x10_0000);
    let error = fuse_init_round_trip(&mut fs, &mem, &rings, &irq, &bufs, 0x1234_5678_9abc);
    assert_eq!(error, 0, "FUSE_INIT failed with errno {}", -error);

    // Reset (GET_VRING_BASE) and a fresh activation on new rings: the data
    // plane works again, as after a guest reboot.
    fs.reset();
    fs.settle();
    assert!(!fs.is_active());
    let rings2 = Rings::new(&mem, 0x4_0000);
    let irq2 = Arc::new(RecordingInterrupt::default());
    fs.activate(context(&mem, rings2.queues(&mem), &irq2))
        .unwrap();
    fs.settle();
    let error = fuse_init_round_trip(
        &mut fs,
        &mem,
        &rings2,
        &irq2,
        &InitBuffers::at(0x20_0000),
        77,
    );
    println!("second FUSE_INIT after reset: error {error}");
    assert!(irq.needs_reset().is_empty());
    drop(fs);
    drop(share);
}

#[test]
fn anonymous_memory_is_a_typed_activation_error() {
    let Some(share) = Share::start() else { return };
    let mut fs = share.connect();
    let anon = anonymous_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&anon, 0x1_0000);

    let err = fs
        .try_activate(context(&anon, rings.queues(&anon), &irq))
        .unwrap_err();
    assert!(
        matches!(err, FsError::AnonymousMemory { guest_addr: 0 }),
        "{err}"
    );
    assert!(err.to_string().contains("memfd"), "{err}");
    assert!(!fs.is_active());

    // Through the VirtioDevice seam (the setup thread) the reason reaches
    // set_needs_reset.
    fs.activate(context(&anon, rings.queues(&anon), &irq))
        .unwrap();
    fs.settle();
    let reasons = irq.needs_reset();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("anonymous"), "{}", reasons[0]);
    assert!(!fs.is_active());

    // Nothing reached the backend: the same device still activates over
    // shared memory.
    let mem = memfd_memory(MEM_SIZE);
    let rings = Rings::new(&mem, 0x1_0000);
    let irq = Arc::new(RecordingInterrupt::default());
    fs.activate(context(&mem, rings.queues(&mem), &irq))
        .unwrap();
    fs.settle();
    let error = fuse_init_round_trip(&mut fs, &mem, &rings, &irq, &InitBuffers::at(0x10_0000), 5);
    assert_eq!(error, 0);
}

#[test]
fn anonymous_memory_through_the_pci_transport_sets_needs_reset() {
    use virtio_support::Machine;
    let Some(share) = Share::start() else { return };
    let fs = share.connect();
    // The test machine's guest memory is anonymous.
    let m = Machine::new(Box::new(fs));
    assert_eq!(m.cfg_read(0x02, 2), 0x1040 + VIRTIO_ID_FS);
    let caps = m.probe();
    let tag: Vec<u8> = (0..4).map(|i| m.read(caps.device + i, 1) as u8).collect();
    assert_eq!(tag, b"myfs");
    assert_eq!(m.read(caps.device + 36, 4), 1);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    m.setup_queue(&caps, 0, 16, 0xffff);
    m.setup_queue(&caps, 1, 16, 0xffff);
    m.driver_ok(&caps);
    // The set-up runs on the device's setup thread; its failure arrives
    // as DEVICE_NEEDS_RESET.
    let start = std::time::Instant::now();
    while m.status(&caps) & status::DEVICE_NEEDS_RESET == 0 {
        assert!(start.elapsed() < TIMEOUT, "no DEVICE_NEEDS_RESET");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!m.function.lock().is_active());
    // A reset clears it; the device can be dropped cleanly afterwards.
    m.set_status(&caps, 0);
    assert_eq!(m.status(&caps), 0);
}

#[test]
fn bad_socket_path_is_a_typed_connect_error() {
    let err = VhostUserFs::connect(Path::new("/nonexistent/uvm/virtiofsd.sock"), "t", 1, 128)
        .err()
        .unwrap();
    assert!(matches!(err, FsError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/uvm/virtiofsd.sock"));

    // A socket file nobody listens on.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = VhostUserFs::connect(&path, "t", 1, 128).err().unwrap();
    assert!(matches!(err, FsError::Connect { .. }), "{err}");

    // Arguments are checked before any connection attempt.
    let long = "x".repeat(37);
    assert!(matches!(
        VhostUserFs::connect(&path, &long, 1, 128),
        Err(FsError::TagTooLong { len: 37 })
    ));
    assert!(matches!(
        VhostUserFs::connect(&path, "t", 1, 100),
        Err(FsError::InvalidQueueSize(100))
    ));
    assert!(matches!(
        VhostUserFs::connect(&path, "t", 0, 128),
        Err(FsError::NoRequestQueues)
    ));
}

#[test]
fn virtiofsd_killed_under_an_active_device_never_panics() {
    let Some(mut share) = Share::start() else {
        return;
    };
    let mut fs = share.connect();
    let mem = memfd_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&mem, 0x1_0000);
    fs.activate(context(&mem, rings.queues(&mem), &irq))
        .unwrap();
    fs.settle();
    let status = share.daemon.kill().unwrap();
    assert!(!status.success());

    assert!(
        irq.wait_for(TIMEOUT, |r| !r.needs_reset.is_empty()),
        "the hang-up was not reported"
    );
    assert!(
        irq.needs_reset()[0].contains("disconnected"),
        "{:?}",
        irq.needs_reset()
    );
    assert!(fs.backend_disconnected());
    // Notifications go nowhere but do not fail; reset and re-activation
    // fail gracefully.
    queue_fuse_init(&mem, &rings, &InitBuffers::at(0x10_0000), 9);
    fs.queue_notify(1).unwrap();
    fs.reset();
    fs.settle();
    let irq2 = Arc::new(RecordingInterrupt::default());
    let err = fs
        .try_activate(context(
            &mem,
            Rings::new(&mem, 0x4_0000).queues(&mem),
            &irq2,
        ))
        .unwrap_err();
    assert!(matches!(err, FsError::Protocol { .. }), "{err}");
    drop(fs);
}

#[test]
fn virtiofsd_exits_when_the_device_goes_away() {
    let Some(mut share) = Share::start() else {
        return;
    };
    let fs = share.connect();
    drop(fs);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = share.daemon.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "virtiofsd still runs");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    println!("virtiofsd exited with {status} after the frontend disconnected");
}

#[test]
fn more_request_queues_than_the_backend_serves_is_a_typed_error() {
    let Some(share) = Share::start() else { return };
    match VhostUserFs::connect(&share.socket(), "q", 2, 128) {
        // virtiofsd 1.14 serves the hiprio queue and one request queue.
        Err(FsError::TooFewQueues { wanted, supported }) => {
            assert_eq!(wanted, 3);
            assert!(supported < 3);
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => println!("this virtiofsd serves 2 request queues"),
    }
}

#[test]
fn negotiated_event_idx_keeps_requests_and_interrupts_flowing() {
    let Some(share) = Share::start() else { return };
    let mut fs = share.connect();
    let wanted = VIRTIO_F_VERSION_1 | (1 << 28) | (1 << 29);
    let features = fs.device_features() & wanted;
    println!(
        "offered {:#x}, negotiating {features:#x}",
        fs.device_features()
    );
    let mem = memfd_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&mem, 0x1_0000);
    let mut ctx = context(&mem, rings.queues(&mem), &irq);
    ctx.features = features;
    fs.ack_features(features);
    fs.activate(ctx).unwrap();
    fs.settle();
    fs.settle();
    for (n, unique) in [11u64, 12, 13].into_iter().enumerate() {
        // Each request reuses descriptors 0..4 once the previous one is used.
        let bufs = InitBuffers::at(0x10_0000 + 0x1000 * n as u64);
        let error = fuse_init_round_trip(&mut fs, &mem, &rings, &irq, &bufs, unique);
        println!("FUSE_INIT #{n}: error {error}");
        // used_event: ask for an interrupt on the next used buffer too.
        rings.request.set_used_event(&mem, rings.used_idx(&mem));
    }
}

#[test]
fn pause_stops_the_rings_and_resume_restarts_them() {
    let Some(share) = Share::start() else { return };
    let mut fs = share.connect();
    let mem = memfd_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&mem, 0x1_0000);
    fs.ack_features(VIRTIO_F_VERSION_1);
    fs.activate(context(&mem, rings.queues(&mem), &irq))
        .unwrap();
    fs.settle();
    let error = fuse_init_round_trip(&mut fs, &mem, &rings, &irq, &InitBuffers::at(0x10_0000), 1);
    assert_eq!(error, 0);

    // Paused: the backend's rings are stopped, a request stays unanswered
    // even when notified.
    fs.pause().unwrap();
    let used_before = rings.used_idx(&mem);
    queue_fuse_init(&mem, &rings, &InitBuffers::at(0x20_0000), 2);
    fs.queue_notify(1).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rings.used_idx(&mem),
        used_before,
        "virtiofsd answered while the device was paused"
    );

    // Resumed (the transport replays the notification): the same request
    // is answered, from where the ring stood.
    fs.resume().unwrap();
    fs.queue_notify(1).unwrap();
    assert!(
        wait_used(&mem, &rings, used_before.wrapping_add(1)),
        "virtiofsd did not answer after resume"
    );
    assert!(irq.needs_reset().is_empty(), "{:?}", irq.needs_reset());
    drop(fs);
    drop(share);
}

/// Stops (SIGSTOP) or continues (SIGCONT) the daemon of `share`.
fn signal_daemon(share: &Share, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(share.daemon.id()).unwrap();
    // SAFETY: kill(2) on the pid of the test's own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[test]
fn a_hung_daemon_never_holds_the_vcpu_that_sets_driver_ok() {
    let Some(share) = Share::start() else { return };
    let limit = Duration::from_millis(500);
    let mut fs = VhostUserFs::connect_with_timeout(&share.socket(), "myfs", 1, 256, limit).unwrap();
    let mem = memfd_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&mem, 0x1_0000);
    fs.ack_features(VIRTIO_F_VERSION_1);
    // The daemon stops answering; DRIVER_OK (the transport calls activate
    // on the vCPU thread that wrote it) must come back at once.
    signal_daemon(&share, libc::SIGSTOP);
    let start = std::time::Instant::now();
    fs.activate(context(&mem, rings.queues(&mem), &irq))
        .unwrap();
    let vcpu_time = start.elapsed();
    // So must a queue notification and a configuration read.
    fs.queue_notify(1).unwrap();
    let mut cfg = [0u8; 4];
    fs.read_config(0, &mut cfg);
    assert!(
        start.elapsed() < limit / 2,
        "the vCPU side waited {vcpu_time:?} for the daemon"
    );
    // The set-up gives up after the time limit and breaks the device.
    assert!(
        irq.wait_for(TIMEOUT, |r| !r.needs_reset.is_empty()),
        "a silent daemon did not break the device"
    );
    assert!(start.elapsed() >= limit, "broken before the time limit");
    let reasons = irq.needs_reset();
    assert!(reasons[0].contains("activation failed"), "{reasons:?}");
    signal_daemon(&share, libc::SIGCONT);
    fs.reset();
    fs.settle();
    assert!(!fs.is_active());
}

#[test]
fn a_hung_daemon_is_a_connect_error_after_the_time_limit() {
    let Some(share) = Share::start() else { return };
    signal_daemon(&share, libc::SIGSTOP);
    let start = std::time::Instant::now();
    let limit = Duration::from_millis(300);
    let result = VhostUserFs::connect_with_timeout(&share.socket(), "myfs", 1, 256, limit);
    signal_daemon(&share, libc::SIGCONT);
    let err = result.err().expect("connect to a stopped daemon succeeded");
    assert!(
        start.elapsed() < TIMEOUT,
        "connect took {:?}",
        start.elapsed()
    );
    println!("connect to a stopped daemon: {err}");
}
