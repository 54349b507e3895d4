//! The backends the `uvm-conformance` binary can run the suite against.
//!
//! This is the one place a backend is added to the binary: register it here
//! (and add its crate to this package's dependencies).

use uvm_api::Registry;

/// Every backend the binary knows, by registry name.
pub fn registry() -> uvm_api::Result<Registry> {
    let mut registry = Registry::new();
    // The simulated backend: always available, the suite's own reference.
    uvm_backend_mock::register(&mut registry)?;
    // The in-process KVM VMM (unavailable where /dev/kvm cannot boot Linux).
    uvm_backend_kvm::register(&mut registry)?;
    Ok(registry)
}
