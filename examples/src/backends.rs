//! Which backends a shim knows, and how it picks one by name.

use std::sync::Arc;

use uvm_api::{Registry, Result};
use uvm_backend_mock::FakeBackend;

/// The registry of every backend this build knows about.
///
/// `"kvm"` (available where `/dev/kvm` can boot Linux) and `"mock"`.
pub fn default_registry() -> Result<Registry> {
    let mut registry = Registry::new();
    uvm_backend_kvm::register(&mut registry)?;
    registry.register(Arc::new(FakeBackend::new()))?;
    Ok(registry)
}

/// The backend a shim will use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChoice {
    /// The registry name of the chosen backend.
    pub name: String,
    /// A message for the user when the choice was not the one asked for.
    pub note: Option<String>,
}

/// Picks the backend: the one `requested` if given (it must be registered and
/// available), otherwise the first available real backend, otherwise the mock
/// with a note saying so.
///
/// # Errors
/// `UnknownBackend` (listing the registered ones) for a name that is not
/// registered; the backend's own reason if it is registered but cannot run here.
pub fn choose_backend(registry: &Registry, requested: Option<&str>) -> Result<BackendChoice> {
    if let Some(name) = requested {
        let backend = registry.get(name)?;
        backend.check_available()?;
        return Ok(BackendChoice {
            name: name.to_owned(),
            note: None,
        });
    }
    let mock = uvm_backend_mock::BACKEND_NAME;
    if let Some(real) = registry.available().into_iter().find(|n| n != mock) {
        return Ok(BackendChoice {
            name: real,
            note: None,
        });
    }
    registry.get(mock)?;
    Ok(BackendChoice {
        name: mock.to_owned(),
        note: Some(format!(
            "no hypervisor backend is available on this host (registered: {}); using the mock backend, whose guest is simulated",
            registry.names().join(", ")
        )),
    })
}
