//! Runtime statistics of a VM. Fields a backend cannot measure stay `None`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::devices::ProcessorLimits;
use crate::resource::Resource;

/// A snapshot of a VM's statistics, as returned by [`crate::Uvm::stats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Time the guest has been running since `start` (pauses included), zero before start.
    pub uptime: Duration,
    /// Processor time consumed by the virtual CPUs.
    pub processor: ProcessorStats,
    /// Memory figures.
    pub memory: MemoryStats,
    /// Per-device counters, for devices that keep them.
    pub devices: Vec<DeviceCounters>,
    /// Backend-specific event counters (for example VM exits by kind).
    pub counters: BTreeMap<String, u64>,
    /// The host CPU group the VM is in, as last set with
    /// [`crate::CpuGroupManager::set_cpu_group`]; `None` until one is set.
    #[serde(default)]
    pub cpu_group: Option<String>,
}

/// Processor time of the virtual CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorStats {
    /// Sum of `per_vcpu`.
    pub total_runtime: Duration,
    /// Host CPU time of each virtual CPU, indexed by vCPU number.
    pub per_vcpu: Vec<Duration>,
    /// The processor limits in force: each field as last set with
    /// [`crate::ProcessorManager::update_limits`] (a field never set is
    /// `None`). `None` from a backend that has no processor manager.
    #[serde(default)]
    pub limits: Option<ProcessorLimits>,
}

/// Memory figures of a VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Guest memory assigned to the VM, in bytes.
    pub assigned_bytes: u64,
    /// Guest memory actually resident on the host, if known.
    pub host_resident_bytes: Option<u64>,
    /// Memory the guest reports as available, if known (needs guest cooperation).
    pub guest_available_bytes: Option<u64>,
}

/// I/O counters of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    /// The kind of device.
    pub resource: Option<Resource>,
    /// The device's identifier as used when it was added.
    pub id: String,
    /// Bytes read by the guest, if counted.
    pub read_bytes: Option<u64>,
    /// Bytes written by the guest, if counted.
    pub write_bytes: Option<u64>,
    /// Requests completed, if counted.
    pub requests: Option<u64>,
}
