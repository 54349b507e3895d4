//! Mutants of the stats area.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::time::Instant;
use uvm_api::{Resource, Result, State, Stats, StopMode, Uvm};

use crate::Mutant;
use crate::lie::Lie;

/// Uptime counts from create, not from start (zero before start still).
struct UptimeFromCreate {
    born: Instant,
    started: Mutex<Option<Instant>>,
}
impl Default for UptimeFromCreate {
    fn default() -> Self {
        UptimeFromCreate {
            born: Instant::now(),
            started: Mutex::new(None),
        }
    }
}
#[async_trait]
impl Lie for UptimeFromCreate {
    async fn start(&self, vm: &dyn Uvm) -> Result<()> {
        *self.started.lock().unwrap() = Some(Instant::now());
        vm.start().await
    }
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if let Some(started) = *self.started.lock().unwrap()
            && !stats.uptime.is_zero()
        {
            stats.uptime += started - self.born;
        }
        Ok(stats)
    }
}

/// The uptime is frozen only when the host stops the VM: after the guest's
/// own exit it keeps ticking.
#[derive(Default)]
struct StatsTickAfterGuestExit {
    host_stopped: AtomicBool,
    seen_stopped: Mutex<Option<Instant>>,
}
#[async_trait]
impl Lie for StatsTickAfterGuestExit {
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        self.host_stopped.store(true, Ordering::SeqCst);
        vm.stop(mode).await
    }
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        if vm.state() == State::Stopped && !self.host_stopped.load(Ordering::SeqCst) {
            let since = *self
                .seen_stopped
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            stats.uptime += since.elapsed();
        }
        Ok(stats)
    }
}

/// Disk counters are listed under the backend's own device names, not the
/// address the disk was added with.
struct DeviceCountersUnderBackendNames;
#[async_trait]
impl Lie for DeviceCountersUnderBackendNames {
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        for d in &mut stats.devices {
            if d.resource == Some(Resource::Scsi) {
                d.id = format!("scsi-{}", d.id.replace(':', "-lun"));
            }
        }
        Ok(stats)
    }
}

/// Only writes are counted: every device reports zero bytes read.
struct DeviceReadCountersStuck;
#[async_trait]
impl Lie for DeviceReadCountersStuck {
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        let mut stats = vm.stats().await?;
        for d in &mut stats.devices {
            d.read_bytes = Some(0);
        }
        Ok(stats)
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "uptime counts from create",
            promise: "stats.uptime_follows_wall_time",
            lie: || Box::<UptimeFromCreate>::default(),
            caught_by: &["stats_uptime_advances_while_running"],
            collateral: &[],
        },
        Mutant {
            name: "stats tick after the guest's exit",
            promise: "stats.frozen_after_exit",
            lie: || Box::<StatsTickAfterGuestExit>::default(),
            caught_by: &["stats_in_every_state"],
            collateral: &[],
        },
        Mutant {
            name: "device counters under backend names",
            promise: "stats.device_counters_truthful",
            lie: || Box::new(DeviceCountersUnderBackendNames),
            caught_by: &["stats_in_every_state"],
            collateral: &[],
        },
        Mutant {
            name: "device read counters stuck at zero",
            promise: "stats.device_counters_truthful",
            lie: || Box::new(DeviceReadCountersStuck),
            caught_by: &["stats_in_every_state"],
            collateral: &[],
        },
    ]
}
