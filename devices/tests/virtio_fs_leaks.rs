//! A full virtio-fs life cycle (daemon, connect, activate, FUSE_INIT,
//! reset, drop) leaves no file descriptor, thread or child process behind.
//! The only test of its crate, so no other test's threads or fds interfere.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_fs_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uvm_devices::virtio::VirtioDevice;
use virtio_fs_support::*;

fn cycle() -> bool {
    let Some(share) = Share::start() else {
        return false;
    };
    let pid = share.daemon.id();
    let mut fs = share.connect();
    let mem = memfd_memory(MEM_SIZE);
    let irq = Arc::new(RecordingInterrupt::default());
    let rings = Rings::new(&mem, 0x1_0000);
    fs.activate(context(&mem, rings.queues(&mem), &irq))
        .unwrap();
    fs.settle();
    let bufs = InitBuffers::at(0x10_0000);
    queue_fuse_init(&mem, &rings, &bufs, 42);
    fs.queue_notify(1).unwrap();
    assert!(wait_used(&mem, &rings, 1));
    assert!(irq.wait_for(TIMEOUT, |r| !r.queue_signals.is_empty()));
    assert_eq!(read_init_reply(&mem, &bufs).1, 0);
    assert!(
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(Result::ok)
            .any(|t| std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "virtio-fs-irq")),
        "the interrupt thread is named"
    );
    fs.reset();
    fs.settle();
    // Activate again and drop while active: drop must clean up too.
    let rings2 = Rings::new(&mem, 0x4_0000);
    fs.activate(context(&mem, rings2.queues(&mem), &irq))
        .unwrap();
    fs.settle();
    drop(fs);
    drop(mem);
    let socket = share.socket();
    drop(share);
    assert!(!socket.exists(), "socket removed");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "virtiofsd {pid} reaped (no zombie)"
    );
    true
}

#[test]
fn no_fd_thread_or_process_leaks() {
    // Warm up lazily initialised process state (tracing, std internals).
    if !cycle() {
        return;
    }
    let fds = count_entries(Path::new("/proc/self/fd"));
    let tasks = count_entries(Path::new("/proc/self/task"));
    for _ in 0..3 {
        assert!(cycle());
    }
    // A joined thread can linger in /proc for a moment after join().
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now_fds = count_entries(Path::new("/proc/self/fd"));
        let now_tasks = count_entries(Path::new("/proc/self/task"));
        if now_fds == fds && now_tasks == tasks {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: fds {fds} -> {now_fds}, threads {tasks} -> {now_tasks}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("after 3 cycles: {fds} fds, {tasks} threads, as before");
}
