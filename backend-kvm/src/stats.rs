//! The VMM's live (or, after the stop, frozen) figures ([`VmStats`]) and
//! the [`uvm_api::Stats`] built from them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use uvm_api::ExitCell;
use uvm_api::{MemoryStats, ProcessorStats, Stats};

use crate::console::ConsoleTap;
use crate::exits::ExitCounters;
use crate::huge_pages;
use crate::memory::{self, GuestMem};
use crate::vcpu::clock::VcpuClock;

/// Figures the stats call reads while the VM runs (and frozen after).
#[derive(Debug, Default)]
pub struct VmStats {
    /// Exit counters.
    pub counters: Arc<ExitCounters>,
    /// One clock per vCPU thread.
    pub clocks: Mutex<Vec<Arc<VcpuClock>>>,
    /// Guest memory while the VM exists.
    pub mem: Mutex<Option<Arc<GuestMem>>>,
    /// Resident bytes measured at the stop.
    pub final_resident: Mutex<Option<u64>>,
    /// How many times the guest clock was saved at pause and restored at resume.
    pub clock_restores: AtomicU64,
}

/// The current statistics.
pub fn collect(
    lifecycle: &ExitCell,
    vm: &VmStats,
    memory_bytes: u64,
    console: &ConsoleTap,
) -> Stats {
    let per_vcpu: Vec<_> = vm.clocks.lock().iter().map(|c| c.cpu_time()).collect();
    let live = vm.mem.lock().clone();
    let huge = live.as_deref().and_then(huge_pages::huge_bytes);
    let host_resident_bytes = match live {
        Some(mem) => memory::resident_bytes(&mem),
        None => *vm.final_resident.lock(),
    };
    let mut counters = vm.counters.snapshot();
    if let Some(huge) = huge {
        counters.insert("memory.huge_page_bytes".into(), huge);
    }
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
            // No processor manager: no limits to report.
            limits: None,
        },
        memory: MemoryStats {
            assigned_bytes: memory_bytes,
            host_resident_bytes,
            guest_available_bytes: None,
        },
        devices: Vec::new(),
        counters,
        // No CPU group manager.
        cpu_group: None,
    }
}
