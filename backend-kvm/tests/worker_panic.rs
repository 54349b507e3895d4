//! A device worker that panics ends the VM with `VmmError` and wakes every
//! waiter, like a vCPU thread that panics: a VMM bug must not leave the VM
//! `Running` forever. The VM runs a real-mode guest that spins (this host's
//! /dev/kvm cannot boot Linux); the test plays the guest's driver of a
//! device whose queue handler panics. Without /dev/kvm it prints
//! "SKIPPED: ..." and returns.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::sync::Arc;
use std::time::Duration;

use uvm_api::{ExitCell, State, StopReason};
use uvm_backend_kvm::arch::boot::BootSpec;
use uvm_backend_kvm::build;
use uvm_backend_kvm::console::ConsoleTap;
use uvm_backend_kvm::control;
use uvm_backend_kvm::exits::ExitCounters;
use uvm_backend_kvm::pci::hub::DeviceHub;
use uvm_backend_kvm::stats::VmStats;
use uvm_devices::quiesce::{Pausable, PauseError};
use uvm_devices::snapshot::Snapshottable;
use uvm_devices::virtio::{
    ActivateContext, DeviceError, QueueHandler, VIRTIO_F_VERSION_1, VirtioDevice,
};

use support::driver::Driver;
use support::{config, kvm_missing, spin_payload};

/// A device with one queue whose handler panics.
struct Buggy;

struct PanickingQueues;

impl QueueHandler for PanickingQueues {
    fn handle_queue(&self, _queue: u16) -> Result<(), DeviceError> {
        panic!("buggy queue handler");
    }
}

impl VirtioDevice for Buggy {
    fn device_type(&self) -> u32 {
        19
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
    fn activate(&mut self, _ctx: ActivateContext) -> Result<(), DeviceError> {
        Ok(())
    }
    fn reset(&mut self) {}
    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(PanickingQueues)
    }
}

impl Pausable for Buggy {
    fn pause(&mut self) -> Result<(), PauseError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), PauseError> {
        Ok(())
    }
}

impl Snapshottable for Buggy {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_device_worker_ends_the_vm_with_a_vmm_error() {
    if kvm_missing() {
        return;
    }
    let hub = Arc::new(DeviceHub::new("worker-panic"));
    let prepared = build::prepare(
        &config("worker-panic"),
        &BootSpec::Payload(spin_payload()),
        Arc::new(ConsoleTap::default()),
        Box::new(Buggy),
        &hub,
        &ExitCounters::default(),
    )
    .unwrap();
    let driver = Driver::enable(prepared.io_bus().clone(), prepared.mmio_bus().clone());
    driver.negotiate();
    driver.queue(0, 0x10000, 0x11000, 0x12000);
    driver.driver_ok();
    let cell = Arc::new(ExitCell::new());
    assert!(cell.set_unless_stopped(State::Running));
    let _vmm = control::launch(
        prepared,
        hub,
        cell.clone(),
        Arc::new(VmStats::default()),
        Box::new(|| {}),
    )
    .unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let cell = cell.clone();
            tokio::spawn(async move { cell.wait().await })
        })
        .collect();
    // The guest notifies the queue: the worker runs the handler, which
    // panics.
    driver.notify(0);
    for waiter in waiters {
        let status = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("a waiter was not woken: the VM still runs")
            .unwrap();
        assert_eq!(status.reason, StopReason::VmmError);
        let detail = status.to_string();
        assert!(
            detail.contains("device worker") && detail.contains("buggy queue handler"),
            "{detail}"
        );
    }
    assert_eq!(cell.state(), State::Stopped);
}
