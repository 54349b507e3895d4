//! Builds [`uvm_api::Stats`] from the VMM's live (or frozen) figures.

use std::sync::atomic::Ordering;

use uvm_api::{MemoryStats, ProcessorStats, Stats};

use crate::console::ConsoleTap;
use crate::lifecycle::Lifecycle;
use crate::memory;
use crate::vmm::VmStats;

/// The current statistics.
pub fn collect(
    lifecycle: &Lifecycle,
    vm: &VmStats,
    memory_bytes: u64,
    console: &ConsoleTap,
) -> Stats {
    let per_vcpu: Vec<_> = vm.clocks.lock().iter().map(|c| c.cpu_time()).collect();
    let live = vm.mem.lock().clone();
    let host_resident_bytes = match live {
        Some(mem) => memory::resident_bytes(&mem),
        None => *vm.final_resident.lock(),
    };
    let mut counters = vm.counters.snapshot();
    counters.insert("console.bytes".into(), console.total_bytes());
    counters.insert(
        "clock.restored_at_resume".into(),
        vm.clock_restores.load(Ordering::Relaxed),
    );
    Stats {
        uptime: lifecycle.uptime(),
        processor: ProcessorStats {
            total_runtime: per_vcpu.iter().sum(),
            per_vcpu,
        },
        memory: MemoryStats {
            assigned_bytes: memory_bytes,
            host_resident_bytes,
            guest_available_bytes: None,
        },
        devices: Vec::new(),
        counters,
    }
}
