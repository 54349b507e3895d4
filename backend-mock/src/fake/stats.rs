//! Statistics of a fake VM, derived from its clocks, config and device counters.

use tokio::time::Instant;
use uvm_api::{DeviceCounters, MemoryStats, ProcessorStats, Resource, State, Stats};

use super::machine::Machine;

const MIB: u64 = 1024 * 1024;

/// The statistics of a VM in `state` with machine `m`, at `now`; the
/// processor limits are reported only if the VM has a processor manager.
pub(crate) fn stats(m: &Machine, state: State, now: Instant, has_limits: bool) -> Stats {
    let vcpus = usize::try_from(m.config.vcpus).unwrap_or(usize::MAX);
    let per_vcpu = vec![m.clock.vcpu_runtime(now); vcpus];
    let total_runtime = per_vcpu.iter().sum();
    let assigned = m.config.memory_mib.saturating_mul(MIB);
    // Once booted the guest has touched about half its memory; before, none.
    let resident = if m.clock.has_started() {
        assigned / 2
    } else {
        0
    };
    // Only a running guest answers the balloon driver.
    let available = (state == State::Running).then(|| assigned / 4 * 3);
    let devices = m
        .scsi
        .disks
        .iter_visible()
        .map(|(_, d)| DeviceCounters {
            resource: Some(Resource::Scsi),
            id: d.spec.address(),
            read_bytes: Some(d.read_bytes),
            write_bytes: Some(d.write_bytes),
            requests: Some(d.requests),
        })
        .collect();
    Stats {
        uptime: m.clock.uptime(now),
        processor: ProcessorStats {
            total_runtime,
            per_vcpu,
            limits: has_limits.then_some(m.resources.limits),
        },
        memory: MemoryStats {
            assigned_bytes: assigned,
            host_resident_bytes: Some(resident),
            guest_available_bytes: available,
        },
        devices,
        counters: m.counters.clone(),
        cpu_group: m.resources.cpu_group.clone(),
    }
}
