//! How the suite gets a backend for each check.

use std::fmt;
use std::sync::Arc;

use uvm_api::Backend;

/// Makes the backend a check runs against. Each check calls it once, so a
/// factory that builds a new backend each time isolates checks from each other.
#[derive(Clone)]
pub struct Factory {
    make: Arc<dyn Fn() -> Arc<dyn Backend> + Send + Sync>,
}

impl Factory {
    /// A factory calling `make` for every check (for example `FakeBackend::new`).
    pub fn new<B, F>(make: F) -> Factory
    where
        B: Backend + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        Factory {
            make: Arc::new(move || Arc::new(make()) as Arc<dyn Backend>),
        }
    }

    /// A factory calling `make`, which already returns a shared backend.
    pub fn from_fn(make: impl Fn() -> Arc<dyn Backend> + Send + Sync + 'static) -> Factory {
        Factory {
            make: Arc::new(make),
        }
    }

    /// A factory handing every check the same backend (as a registry holds it).
    pub fn shared(backend: Arc<dyn Backend>) -> Factory {
        Factory::from_fn(move || Arc::clone(&backend))
    }

    /// A backend for one check.
    pub fn make(&self) -> Arc<dyn Backend> {
        (self.make)()
    }
}

impl fmt::Debug for Factory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Factory")
    }
}
