//! Resource settings: processor limits and the CPU group.

use uvm_api::ProcessorLimits;

/// The resource settings in force.
#[derive(Debug, Default, Clone)]
pub(crate) struct ResourceState {
    /// Processor limits in force (unset fields never set).
    pub limits: ProcessorLimits,
    /// The host CPU group the VM is in, if set.
    pub cpu_group: Option<String>,
}

impl ResourceState {
    /// Applies the fields that are set in `update`.
    pub fn apply(&mut self, update: ProcessorLimits) {
        self.limits.limit = update.limit.or(self.limits.limit);
        self.limits.weight = update.weight.or(self.limits.weight);
        self.limits.reservation = update.reservation.or(self.limits.reservation);
    }
}
