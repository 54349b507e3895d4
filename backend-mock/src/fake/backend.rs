//! [`FakeBackend`]: the factory of [`FakeUvm`]s, and its registration
//! under [`BACKEND_NAME`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tracing::{Instrument, info};
use uvm_api::{
    Action, Backend, BootDevices, Capabilities, Error, GuestOs, Registry, Result, Uvm, UvmConfig,
    op_span,
};

use super::core::Core;
use super::options::FakeOptions;
use super::profile::Profile;
use super::snapshot::Snapshot;
use super::vm::FakeUvm;

/// The name the fake backend is registered under.
pub const BACKEND_NAME: &str = "mock";

/// Registers a [`FakeBackend`] with every capability ([`FakeBackend::new`])
/// under [`BACKEND_NAME`].
///
/// # Errors
/// `AlreadySet` if a backend called `"mock"` is registered already.
pub fn register(registry: &mut Registry) -> Result<()> {
    registry.register(Arc::new(FakeBackend::new()))
}

/// The fake backend, registered as `"mock"`. Runs Linux guests only.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    options: FakeOptions,
}

impl FakeBackend {
    /// A backend with every capability ([`Profile::all`]) and default delays.
    pub fn new() -> FakeBackend {
        FakeBackend::default()
    }

    /// A backend with the capabilities of `profile` and default delays.
    pub fn with_profile(profile: Profile) -> FakeBackend {
        FakeBackend::with_options(FakeOptions {
            profile,
            ..FakeOptions::default()
        })
    }

    /// A backend with these options.
    pub fn with_options(options: FakeOptions) -> FakeBackend {
        FakeBackend { options }
    }

    /// The options the backend's VMs get.
    pub fn options(&self) -> &FakeOptions {
        &self.options
    }

    fn check_guest_os(&self, os: GuestOs) -> Result<()> {
        if self.supports_guest_os(os) {
            Ok(())
        } else {
            Err(Error::UnsupportedGuestOs {
                os,
                backend: BACKEND_NAME.to_owned(),
            })
        }
    }

    /// [`Backend::create`] with the concrete VM type.
    ///
    /// # Errors
    /// `InvalidConfig` for a config that fails validation,
    /// `UnsupportedGuestOs` for Windows, and the error of the manager call
    /// that refused a boot device (`NotSupported` if the profile lacks it,
    /// `InvalidArgument` for a missing image, ...).
    pub async fn create_fake(&self, config: UvmConfig) -> Result<FakeUvm> {
        let span = op_span(&config.id, "create");
        async {
            config.validate()?;
            self.check_guest_os(config.guest_os)?;
            let core = Core::new(config.clone(), self.options.clone());
            plug_boot_devices(&core, &config.devices)?;
            info!(
                vcpus = config.vcpus,
                memory_mib = config.memory_mib,
                "VM created"
            );
            Ok(FakeUvm::from_core(core))
        }
        .instrument(span)
        .await
    }

    /// [`Backend::restore`] with the concrete VM type: the VM comes back paused.
    ///
    /// # Errors
    /// `ActionNotSupported { action: Save }` if the profile has no restore,
    /// `Io` for an unreadable file, `InvalidArgument` for one that is not a
    /// mock snapshot, and the error of a manager call refusing a saved device.
    pub async fn restore_fake(&self, snapshot: &Path) -> Result<FakeUvm> {
        if !self.options.profile.allows_restore() {
            return Err(Error::ActionNotSupported {
                action: Action::Save,
            });
        }
        let snapshot = Snapshot::read(snapshot).await?;
        let span = op_span(&snapshot.config().id, "restore");
        async {
            self.check_guest_os(snapshot.config().guest_os)?;
            let core = snapshot.rebuild(self.options.clone())?;
            Ok(FakeUvm::from_core(core))
        }
        .instrument(span)
        .await
    }
}

/// Cold-plugs the boot devices through the managers' own code.
fn plug_boot_devices(core: &Core, devices: &BootDevices) -> Result<()> {
    for index in 0..devices.scsi_controllers {
        core.scsi_add_controller(index)?;
    }
    for disk in &devices.scsi_disks {
        core.scsi_add_disk(disk.clone(), None)?;
    }
    if let Some(controller) = devices.vpmem {
        core.vpmem_add_controller(controller)?;
    }
    for device in &devices.vpmem_devices {
        core.vpmem_add_device(device.clone())?;
    }
    for nic in &devices.nics {
        core.net_add_nic(nic.clone(), None)?;
    }
    for share in &devices.shares {
        core.share_add(share.clone())?;
    }
    Ok(())
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.options.profile.capabilities()
    }

    fn supports_guest_os(&self, os: GuestOs) -> bool {
        os == GuestOs::Linux
    }

    async fn create(&self, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        Ok(Box::new(self.create_fake(config).await?))
    }

    async fn restore(&self, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        Ok(Box::new(self.restore_fake(snapshot).await?))
    }
}
