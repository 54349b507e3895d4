//! The backends the `uvm-conformance` binary can run the suite against.
//!
//! This is the one place a backend is added to the binary: register it here
//! (and add its crate to this package's dependencies).

use std::sync::Arc;

use uvm_api::{Registry, UvmConfig};
use uvm_backend_mock::{FakeBackend, Profile};
use uvm_tools::guest_assets::GuestAssets;

/// Every backend the binary knows, by registry name; `mock` with the
/// capabilities of `mock_profile`.
pub fn registry(mock_profile: Profile) -> uvm_api::Result<Registry> {
    let mut registry = Registry::new();
    // The simulated backend: always available, the suite's own reference.
    registry.register(Arc::new(FakeBackend::with_profile(mock_profile)))?;
    // The in-process KVM VMM (unavailable where /dev/kvm cannot boot Linux).
    uvm_backend_kvm::register(&mut registry)?;
    Ok(registry)
}

/// Fills in what `backend` needs to boot that the template lacks: for
/// `kvm`, a template without a kernel gets the test guest's kernel, initrd
/// and recommended command line from `UVM_GUEST_ASSETS`.
pub fn with_boot_files(backend: &str, mut template: UvmConfig) -> Result<UvmConfig, String> {
    if backend != uvm_backend_kvm::BACKEND_NAME || template.kernel.is_some() {
        return Ok(template);
    }
    let assets =
        GuestAssets::from_env().map_err(|e| format!("the kvm backend needs a guest: {e}"))?;
    template.cmdline = assets.recommended_cmdline(&template.cmdline);
    template.kernel = Some(assets.kernel);
    template.initrd = Some(assets.initrd);
    template.validate().map_err(|e| e.to_string())?;
    Ok(template)
}
