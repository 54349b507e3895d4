//! What a check gets: a backend, the config template, a scratch directory and time limits.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use uvm_api::{Backend, UvmConfig};

use crate::factory::Factory;

/// Time limits the checks use while they wait for the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a removal may take to complete (the guest releasing the device).
    pub removal_timeout: Duration,
    /// How long a hot-plugged device may take to show up in (or leave) the guest.
    pub guest_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            removal_timeout: Duration::from_secs(10),
            guest_timeout: Duration::from_secs(5),
        }
    }
}

/// Numbers VMs across the whole process, so ids never repeat even when checks share a backend.
static NEXT_VM: AtomicU64 = AtomicU64::new(1);

/// Longest prefix of the template's id kept in the ids of the VMs the checks create.
const ID_PREFIX_LEN: usize = 32;

/// The context of one check run. Cheap to clone; the scratch directory is
/// removed when the last clone is dropped.
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<Inner>,
}

struct Inner {
    check: &'static str,
    factory: Factory,
    backend: Arc<dyn Backend>,
    template: UvmConfig,
    scratch: TempDir,
    settings: Settings,
}

impl Ctx {
    /// A context for check `check`: calls the factory once and creates a scratch directory.
    ///
    /// # Errors
    /// The scratch directory could not be created.
    pub fn new(
        check: &'static str,
        factory: Factory,
        template: UvmConfig,
        settings: Settings,
    ) -> std::io::Result<Ctx> {
        let scratch = tempfile::Builder::new()
            .prefix(&format!("uvm-conformance-{check}-"))
            .tempdir()?;
        let backend = factory.make();
        Ok(Ctx {
            inner: Arc::new(Inner {
                check,
                factory,
                backend,
                template,
                scratch,
                settings,
            }),
        })
    }

    /// The name of the check this context is for.
    pub fn check(&self) -> &'static str {
        self.inner.check
    }

    /// The backend under test (made once for this check).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The factory, for checks that need fresh backends.
    pub fn factory(&self) -> &Factory {
        &self.inner.factory
    }

    /// The config template, as given.
    pub fn template(&self) -> &UvmConfig {
        &self.inner.template
    }

    /// A directory only this check uses, for disk images, share folders and snapshots.
    pub fn scratch(&self) -> &Path {
        self.inner.scratch.path()
    }

    /// The time limits.
    pub fn settings(&self) -> Settings {
        self.inner.settings
    }

    /// The template with a VM id never used before in this process.
    pub fn config(&self) -> UvmConfig {
        let mut config = self.inner.template.clone();
        let n = NEXT_VM.fetch_add(1, Ordering::Relaxed);
        let prefix: String = config.id.chars().take(ID_PREFIX_LEN).collect();
        config.id = format!("{prefix}-{}-{n}", std::process::id());
        config
    }
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("check", &self.inner.check)
            .field("backend", &self.inner.backend.name())
            .field("template", &self.inner.template.id)
            .field("scratch", &self.scratch())
            .finish()
    }
}
