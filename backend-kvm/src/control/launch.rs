//! [`launch`]: starts the vCPU threads of a built VM and its control thread.

use std::sync::Arc;

use uvm_api::ExitCell;
use uvm_api::{ExitStatus, StopReason};

use super::controller::Controller;
use super::protocol::VmmHandle;
use crate::build::Prepared;
use crate::coalesced::Ticker;
use crate::error::VmmError;
use crate::pci::hub::DeviceHub;
use crate::stats::VmStats;
use crate::vcpu::clock::VcpuClock;
use crate::vcpu::control::RunControl;
use crate::vcpu::{self, VcpuContext, kick};

/// Starts the vCPU threads and the control thread of `prepared`. Guest
/// ejects go to `hub`; `release_devices` runs on the control thread at the
/// stop, once every vCPU thread has ended (see [`super::teardown`]).
pub fn launch(
    prepared: Prepared,
    hub: Arc<DeviceHub>,
    lifecycle: Arc<ExitCell>,
    stats: Arc<VmStats>,
    release_devices: Box<dyn FnOnce() + Send>,
) -> Result<VmmHandle, VmmError> {
    kick::install_kick_handler().map_err(VmmError::io("install the vCPU kick signal handler"))?;
    let Prepared {
        id,
        vm,
        pci,
        vcpus,
        mem,
        io_bus,
        held,
        mmio_bus,
        pm,
        events,
        guest,
        inbox,
    } = prepared;
    let ticker = Ticker::start(held.clone(), io_bus.clone(), stats.counters.clone(), &id)
        .map_err(VmmError::io("spawn the held-writes ticker"))?;
    *stats.mem.lock() = Some(mem.clone());
    let control = Arc::new(RunControl::default());
    let mut controller = Controller {
        id: id.clone(),
        vm,
        pci: Some(pci),
        hub,
        release_devices: Some(release_devices),
        _mem: mem.clone(),
        pm,
        control: control.clone(),
        threads: Vec::new(),
        guest,
        inbox,
        lifecycle,
        stats: stats.clone(),
        saved_clock: None,
        ticker: Some(ticker),
    };
    let mut clocks = Vec::new();
    for (index, vcpu) in vcpus.into_iter().enumerate() {
        let clock = Arc::new(VcpuClock::default());
        clocks.push(clock.clone());
        let ctx = VcpuContext {
            index: index as u8,
            vm_id: id.clone(),
            io_bus: io_bus.clone(),
            held: Some(held.clone()),
            mmio_bus: mmio_bus.clone(),
            mem: mem.clone(),
            control: control.clone(),
            counters: stats.counters.clone(),
            clock,
            events: events.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || vcpu::run(vcpu, ctx));
        match spawned {
            Ok(handle) => controller.threads.push(handle),
            Err(e) => {
                controller.finish(ExitStatus::with_detail(
                    StopReason::StartFailed,
                    format!("spawning vCPU thread {index}: {e}"),
                ));
                return Err(VmmError::io("spawn a vCPU thread")(e));
            }
        }
    }
    *stats.clocks.lock() = clocks;
    std::thread::Builder::new()
        .name(format!("vmm-{id}"))
        .spawn(move || controller.run())
        .map_err(VmmError::io("spawn the VMM control thread"))?;
    Ok(VmmHandle::new(events))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use parking_lot::Mutex;
    use uvm_api::{State, UvmConfig};
    use uvm_devices::bus::BusDevice;
    use uvm_devices::virtio::vsock::{VsockDevice, VsockHost};

    use super::*;
    use crate::arch::boot::BootSpec;
    use crate::arch::boot::payload::RealModePayload;
    use crate::build;
    use crate::console::ConsoleTap;

    /// A device with a bug: any write panics.
    struct Buggy;

    impl BusDevice for Buggy {
        fn read(&mut self, _offset: u64, _data: &mut [u8]) {}
        fn write(&mut self, _offset: u64, _data: &[u8]) {
            panic!("buggy device");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_vcpu_thread_ends_the_vm_with_a_vmm_error() {
        if !std::path::Path::new("/dev/kvm").exists() {
            eprintln!("SKIPPED: /dev/kvm not available");
            return;
        }
        let config = UvmConfig::builder("panic")
            .vcpus(1)
            .memory_mib(16)
            .build()
            .unwrap();
        let host = VsockHost::new(3);
        let vsock = VsockDevice::new(3, host.backend(), &tokio::runtime::Handle::current());
        let hub = Arc::new(DeviceHub::new("panic"));
        // out 0x80, al ; jmp $
        let payload = RealModePayload {
            code: vec![0xe6, 0x80, 0xeb, 0xfe],
            load_addr: 0x1000,
        };
        let mut prepared = build::prepare(
            &config,
            &BootSpec::Payload(payload),
            Arc::new(ConsoleTap::default()),
            Box::new(vsock),
            &hub,
            &crate::exits::ExitCounters::default(),
        )
        .unwrap();
        Arc::get_mut(&mut prepared.io_bus)
            .unwrap()
            .insert(Arc::new(Mutex::new(Buggy)), 0x80, 1)
            .unwrap();
        let cell = Arc::new(ExitCell::new());
        assert!(cell.set_unless_stopped(State::Running));
        let _vmm = launch(
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
        for waiter in waiters {
            let status = tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("a waiter was not woken: the VM still runs")
                .unwrap();
            assert_eq!(status.reason, StopReason::VmmError);
            let detail = status.to_string();
            assert!(
                detail.contains("vCPU 0 thread died") && detail.contains("buggy device"),
                "{detail}"
            );
        }
        assert_eq!(cell.state(), State::Stopped);
    }
}
