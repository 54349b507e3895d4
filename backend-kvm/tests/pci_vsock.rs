//! The PCI root bus and the virtio-vsock function of a prepared VM, driven
//! through the VM's own port and MMIO buses the way a guest driver would
//! (no vCPU runs: this host's /dev/kvm cannot boot Linux), plus the vsock
//! manager's state rules on a running real-mode VM. Without /dev/kvm they
//! print "SKIPPED: ..." and return.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::sync::Arc;
use std::time::Duration;

use uvm_api::{Error, Operation, Resource, State, StopMode, Uvm, VMADDR_PORT_ANY};
use uvm_backend_kvm::KvmBackend;
use uvm_backend_kvm::arch::boot::BootSpec;
use uvm_backend_kvm::build::pci::BAR_WINDOW;
use uvm_backend_kvm::build::{self, Prepared};
use uvm_backend_kvm::console::ConsoleTap;
use uvm_backend_kvm::exits::ExitCounters;
use uvm_backend_kvm::pci::hub::DeviceHub;
use uvm_backend_kvm::pci::slots::VSOCK as VSOCK_SLOT;
use uvm_devices::virtio::pci_transport::caps;
use uvm_devices::virtio::status;
use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};
use vm_memory::{Bytes, GuestAddress};

use support::driver::{Driver, cfg_read32};
use support::{config, kvm_missing, spin_payload};

fn prepared() -> Prepared {
    let boot = BootSpec::Payload(spin_payload());
    let device = VsockDevice::new(
        3,
        VsockHost::new(3).backend(),
        &tokio::runtime::Handle::current(),
    );
    build::prepare(
        &config("pci"),
        &boot,
        Arc::new(ConsoleTap::default()),
        Box::new(device),
        &Arc::new(DeviceHub::new("pci")),
        &ExitCounters::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vsock_function_is_enumerable_through_port_0xcf8() {
    if kvm_missing() {
        return;
    }
    let vm = prepared();
    let host_bridge = cfg_read32(vm.io_bus(), 0, 0);
    assert_eq!(host_bridge, 0x29c0_8086);
    // virtio vendor, modern device id 0x1040 + 19 (vsock).
    assert_eq!(cfg_read32(vm.io_bus(), VSOCK_SLOT, 0), 0x1053_1af4);
    // An empty slot reads as all ones.
    assert_eq!(cfg_read32(vm.io_bus(), 7, 0), 0xffff_ffff);
    let driver = Driver::enable(vm.io_bus().clone(), vm.mmio_bus().clone());
    let (base, size) = BAR_WINDOW;
    assert!(driver.bar0 >= base && driver.bar0 + caps::BAR0_SIZE <= base + size);
    // The device configuration holds the guest CID.
    assert_eq!(driver.read8(caps::DEVICE_OFFSET), 3);
    assert_eq!(driver.status(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_outside_guest_memory_breaks_the_device_not_the_host() {
    if kvm_missing() {
        return;
    }
    let vm = prepared();
    let driver = Driver::enable(vm.io_bus().clone(), vm.mmio_bus().clone());
    driver.negotiate();
    let outside = 0x7_0000_0000; // far beyond the 16 MiB of RAM
    for q in 0..3 {
        driver.queue(q, outside, outside + 0x1000, outside + 0x2000);
    }
    driver.driver_ok();
    assert_ne!(
        driver.status() & status::DEVICE_NEEDS_RESET,
        0,
        "a queue outside guest memory must mark the device broken"
    );
    assert!(!vm.pci().vsock.lock().is_active());
    // A reset by the guest recovers the device.
    driver.write(0x14, 0, 1);
    assert_eq!(driver.status(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tx_descriptor_breaks_the_device_not_the_host() {
    if kvm_missing() {
        return;
    }
    let vm = prepared();
    let driver = Driver::enable(vm.io_bus().clone(), vm.mmio_bus().clone());
    driver.negotiate();
    // Rings inside guest memory: queue q at 0x10000 + q * 0x3000.
    let ring = |q: u64| 0x10000 + q * 0x3000;
    for q in 0..3u16 {
        let r = ring(u64::from(q));
        driver.queue(q, r, r + 0x1000, r + 0x2000);
    }
    driver.driver_ok();
    assert_eq!(driver.status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(vm.pci().vsock.lock().is_active());
    // KVM took one ioeventfd per enabled queue, at the notify addresses,
    // and a device worker serves them.
    let registered = vm.pci().vsock.lock().registered_notify_addresses();
    let notify0 = vm.pci().vsock.lock().notify_address(0).unwrap();
    assert_eq!(registered, vec![notify0, notify0 + 4, notify0 + 8]);
    assert!(vm.pci().vsock.lock().has_worker());
    // tx (queue 1): one descriptor whose buffer lies outside guest memory.
    let mem = vm.memory();
    let tx = ring(1);
    let mut desc = Vec::new();
    desc.extend_from_slice(&0x7_0000_0000u64.to_le_bytes()); // addr
    desc.extend_from_slice(&64u32.to_le_bytes()); // len
    desc.extend_from_slice(&0u16.to_le_bytes()); // flags
    desc.extend_from_slice(&0u16.to_le_bytes()); // next
    mem.write_slice(&desc, GuestAddress(tx)).unwrap();
    // avail: flags 0, idx 1, ring[0] = 0.
    mem.write_slice(&[0, 0, 1, 0, 0, 0], GuestAddress(tx + 0x1000))
        .unwrap();
    driver.write(caps::NOTIFY_OFFSET + 4, 1, 2);
    // The device worker serves the notification on its own thread.
    let sent = std::time::Instant::now();
    while driver.status() & status::DEVICE_NEEDS_RESET == 0 {
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(5),
            "a descriptor outside guest memory must mark the device broken"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Further notifications are ignored, without panicking.
    driver.write(caps::NOTIFY_OFFSET + 4, 1, 2);
    driver.write(caps::NOTIFY_OFFSET, 0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsock_manager_follows_the_state_table() {
    if kvm_missing() {
        return;
    }
    let vm = KvmBackend::new()
        .create_with_payload(config("vsock-states"), spin_payload())
        .unwrap();
    assert!(vm.supported(Resource::VmSocket, Operation::Add));
    for r in [Resource::Scsi, Resource::VPMem, Resource::Network] {
        assert!(vm.supported(r, Operation::Add), "{r}");
    }
    for r in [Resource::Pci, Resource::Plan9, Resource::Memory] {
        assert!(!vm.supported(r, Operation::Add), "{r}");
    }
    assert!(vm.scsi().is_some() && vm.network().is_some() && vm.pci().is_none());
    let sockets = vm.vm_socket().unwrap();
    assert!(vm.guest_probe().is_some());

    // Created: listen works, connect does not.
    let mut listener = sockets.listen(5000).await.unwrap();
    assert_eq!(listener.port(), 5000);
    assert!(matches!(
        sockets.listen(5000).await,
        Err(Error::AlreadyExists {
            resource: Resource::VmSocket,
            ..
        })
    ));
    assert!(matches!(
        sockets.listen(VMADDR_PORT_ANY).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        sockets.connect(1024).await,
        Err(Error::InvalidState {
            state: State::Created,
            ..
        })
    ));

    // Running: the (real-mode) guest has no vsock driver, so connects are
    // refused at once instead of hanging.
    vm.start().await.unwrap();
    match sockets.connect(1024).await {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        Err(other) => panic!("expected connection refused, got {other}"),
        Ok(_) => panic!("expected connection refused, got a stream"),
    }
    assert!(matches!(
        sockets.connect(VMADDR_PORT_ANY).await,
        Err(Error::InvalidArgument { .. })
    ));

    // A pending accept ends with InvalidState when the VM stops.
    let pending = tokio::spawn(async move {
        let r = listener.accept().await.map(|_| ());
        (r, listener)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    vm.stop(StopMode::Force).await.unwrap();
    let (result, mut listener) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(Error::InvalidState { .. })),
        "{result:?}"
    );
    assert!(matches!(
        listener.accept().await.map(|_| ()),
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(
        sockets.listen(5001).await,
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(
        sockets.connect(1024).await,
        Err(Error::InvalidState { .. })
    ));
}
