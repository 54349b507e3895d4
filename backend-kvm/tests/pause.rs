//! A paused kvm VM processes no virtio queue: the guest's queue
//! notification that arrives while the VM is paused (here written by the
//! test through the VM's MMIO bus, as a guest vCPU or an ioeventfd would)
//! is handled only after resume. The VM runs a real-mode guest that spins
//! on vCPU 0 (this host's /dev/kvm cannot boot Linux); the test plays the
//! guest's vsock driver. Without /dev/kvm it prints "SKIPPED: ..." and
//! returns.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use uvm_api::{ExitCell, ExitStatus, State, StopReason};
use uvm_backend_kvm::arch::boot::BootSpec;
use uvm_backend_kvm::build;
use uvm_backend_kvm::console::ConsoleTap;
use uvm_backend_kvm::control::{self, protocol::Command};
use uvm_backend_kvm::exits::ExitCounters;
use uvm_backend_kvm::pci::hub::DeviceHub;
use uvm_backend_kvm::stats::VmStats;
use uvm_devices::virtio::vsock::packet::{HDR_SIZE, Header, op};
use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};
use vm_memory::{Bytes, GuestAddress};

use support::driver::Driver;
use support::{config, kvm_missing, spin_payload};

/// Where queue `q`'s rings live in guest memory.
fn ring(q: u16) -> u64 {
    0x10000 + u64::from(q) * 0x3000
}

/// The used index of queue `q`.
fn used_idx(mem: &uvm_backend_kvm::memory::GuestMem, q: u16) -> u16 {
    mem.read_obj(GuestAddress(ring(q) + 0x2000 + 2)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_vm_handles_a_queue_notification_only_after_resume() {
    if kvm_missing() {
        return;
    }
    let host = VsockHost::new(3);
    let mut listener = host.listen(5000).unwrap();
    let device = VsockDevice::new(3, host.backend(), &tokio::runtime::Handle::current());
    let hub = Arc::new(DeviceHub::new("pause"));
    let prepared = build::prepare(
        &config("pause"),
        &BootSpec::Payload(spin_payload()),
        Arc::new(ConsoleTap::default()),
        Box::new(device),
        &hub,
        &ExitCounters::default(),
    )
    .unwrap();
    let mem = prepared.memory().clone();
    let driver = Driver::enable(prepared.io_bus().clone(), prepared.mmio_bus().clone());
    driver.negotiate();
    for q in 0..3u16 {
        let r = ring(q);
        driver.queue(q, r, r + 0x1000, r + 0x2000);
    }
    driver.driver_ok();

    let cell = Arc::new(ExitCell::new());
    assert!(cell.set_unless_stopped(State::Running));
    let vmm = control::launch(
        prepared,
        hub.clone(),
        cell.clone(),
        Arc::new(VmStats::default()),
        Box::new(|| {}),
    )
    .unwrap();
    let (tx, rx) = oneshot::channel();
    vmm.send(Command::Pause(tx)).unwrap();
    rx.await.unwrap().unwrap();

    // While paused, the guest asks to connect to host port 5000: one
    // REQUEST on the tx ring (queue 1), then the queue notification.
    let request = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 40000,
        dst_port: 5000,
        type_: 1,
        op: op::REQUEST,
        buf_alloc: 1 << 16,
        ..Header::default()
    };
    let buffer = 0x40000u64;
    mem.write_slice(&request.to_bytes(), GuestAddress(buffer))
        .unwrap();
    let mut desc = Vec::new();
    desc.extend_from_slice(&buffer.to_le_bytes());
    desc.extend_from_slice(&(HDR_SIZE as u32).to_le_bytes());
    desc.extend_from_slice(&[0u8; 4]); // flags 0, next 0
    mem.write_slice(&desc, GuestAddress(ring(1))).unwrap();
    mem.write_slice(&[0, 0, 1, 0, 0, 0], GuestAddress(ring(1) + 0x1000))
        .unwrap(); // avail: flags 0, idx 1, ring[0] = 0
    driver.notify(1);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        used_idx(&mem, 1),
        0,
        "the tx queue was processed while paused"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), listener.accept())
            .await
            .is_err(),
        "the host heard the guest while the VM was paused"
    );

    let (tx, rx) = oneshot::channel();
    vmm.send(Command::Resume(tx)).unwrap();
    rx.await.unwrap().unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the request was not handled after resume")
        .unwrap();
    assert_eq!((stream.local_port(), stream.peer_port()), (5000, 40000));
    // The device worker returns the chain right after the host heard it.
    let returned = std::time::Instant::now();
    while used_idx(&mem, 1) != 1 {
        assert!(
            returned.elapsed() < Duration::from_secs(5),
            "the tx chain did not go back to the guest"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (tx, rx) = oneshot::channel();
    let killed = ExitStatus::with_detail(StopReason::Killed, "test over");
    vmm.send(Command::Stop(killed, tx)).unwrap();
    rx.await.unwrap();
    assert_eq!(cell.wait().await.reason, StopReason::Killed);
}
