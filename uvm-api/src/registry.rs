//! Picks a backend by name at run time.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;

use crate::backend::Backend;
use crate::config::UvmConfig;
use crate::error::{Error, Result};
use crate::uvm::Uvm;

/// A set of backends by name.
#[derive(Clone, Default)]
pub struct Registry {
    backends: BTreeMap<String, Arc<dyn Backend>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a backend under its name. `AlreadySet` if the name is taken.
    pub fn register(&mut self, backend: Arc<dyn Backend>) -> Result<()> {
        let name = backend.name().to_owned();
        if self.backends.contains_key(&name) {
            return Err(Error::AlreadySet {
                what: format!("backend {name:?}"),
            });
        }
        self.backends.insert(name, backend);
        Ok(())
    }

    /// Adds a backend, builder style.
    ///
    /// # Errors
    /// `AlreadySet` if a backend of that name is registered.
    pub fn with(mut self, backend: Arc<dyn Backend>) -> Result<Self> {
        self.register(backend)?;
        Ok(self)
    }

    /// The backend called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownBackend {
                name: name.to_owned(),
                available: self.names(),
            })
    }

    /// Names of the registered backends, sorted.
    pub fn names(&self) -> Vec<String> {
        self.backends.keys().cloned().collect()
    }

    /// Names of the backends that can run on this host now.
    pub fn available(&self) -> Vec<String> {
        self.backends
            .iter()
            .filter(|(_, b)| b.check_available().is_ok())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Creates a VM with the backend called `name`.
    pub async fn create(&self, name: &str, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        let backend = self.get(name)?;
        backend.check_available()?;
        info!(backend = name, vm = %config.id, "creating VM");
        backend.create(config).await
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("backends", &self.names())
            .finish()
    }
}
