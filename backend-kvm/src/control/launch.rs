//! [`launch`]: starts the vCPU threads of a built VM and its control thread.

use std::sync::Arc;

use uvm_api::ExitCell;
use uvm_api::{ExitStatus, StopReason};

use super::controller::Controller;
use super::protocol::VmmHandle;
use crate::build::Prepared;
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
        mmio_bus,
        pm,
        events,
        guest,
        inbox,
    } = prepared;
    *stats.mem.lock() = Some(mem.clone());
    let control = Arc::new(RunControl::default());
    let mut controller = Controller {
        id: id.clone(),
        vm,
        pci: Some(pci),
        hub,
        release_devices: Some(release_devices),
        _mem: mem,
        pm,
        control: control.clone(),
        threads: Vec::new(),
        guest,
        inbox,
        lifecycle,
        stats: stats.clone(),
        saved_clock: None,
    };
    let mut clocks = Vec::new();
    for (index, vcpu) in vcpus.into_iter().enumerate() {
        let clock = Arc::new(VcpuClock::default());
        clocks.push(clock.clone());
        let ctx = VcpuContext {
            index: index as u8,
            vm_id: id.clone(),
            io_bus: io_bus.clone(),
            mmio_bus: mmio_bus.clone(),
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
