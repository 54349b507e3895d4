//! [`KvmBackend`]: the `"kvm"` backend.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use uvm_api::{Action, Backend, Capabilities, Error, GuestOs, Result, Uvm, UvmConfig};
use uvm_devices::virtio::fs::find_virtiofsd;

use crate::arch::boot::BootSpec;
use crate::arch::boot::payload::RealModePayload;
use crate::capabilities;
use crate::managers::net::retry_while_tap_busy;
use crate::uvm::KvmUvm;

/// The registry name of this backend.
pub const NAME: &str = "kvm";

/// The KVM backend.
#[derive(Debug, Default, Clone)]
pub struct KvmBackend {
    virtiofsd: Option<PathBuf>,
}

/// Why this host cannot boot Linux guests with KVM, or `None` if it can.
/// `cpuinfo` is the text of `/proc/cpuinfo`.
pub fn unavailable_reason(dev_kvm_exists: bool, cpuinfo: &str) -> Option<String> {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let virt = flags.iter().any(|f| *f == "vmx" || *f == "svm");
    match (dev_kvm_exists, virt) {
        (true, true) => None,
        (false, _) => Some("/dev/kvm does not exist (load kvm-intel or kvm-amd)".into()),
        (true, false) => Some(
            "/proc/cpuinfo has neither vmx nor svm: this /dev/kvm has no hardware \
             virtualization (for example kvm_pvm) and cannot boot a Linux guest; \
             use `cargo xtask lab` for a nested KVM"
                .into(),
        ),
    }
}

impl KvmBackend {
    /// The backend.
    pub fn new() -> Self {
        KvmBackend {
            virtiofsd: find_virtiofsd(),
        }
    }

    /// A backend serving shared folders with `virtiofsd` (`None`: no
    /// shared folders), instead of the one [`find_virtiofsd`] finds.
    pub fn with_virtiofsd(virtiofsd: Option<PathBuf>) -> Self {
        KvmBackend { virtiofsd }
    }

    fn check(config: &UvmConfig) -> Result<()> {
        config.validate()?;
        if config.guest_os != GuestOs::Linux {
            return Err(Error::UnsupportedGuestOs {
                os: config.guest_os,
                backend: NAME.into(),
            });
        }
        Ok(())
    }

    /// Creates a VM with its concrete type (console access for tests and
    /// tools), with the configuration's boot-time devices added.
    pub fn create_vm(&self, config: UvmConfig) -> Result<KvmUvm> {
        Self::check(&config)?;
        KvmUvm::new(config, None, self.virtiofsd.clone())
    }

    /// Creates a VM whose boot vCPU runs `payload` in real mode instead of a
    /// kernel (the config's kernel, initrd and command line are ignored).
    /// Every device is present. For tests on hosts whose `/dev/kvm` runs
    /// small real-mode code but cannot boot Linux.
    pub fn create_with_payload(
        &self,
        config: UvmConfig,
        payload: RealModePayload,
    ) -> Result<KvmUvm> {
        Self::check(&config)?;
        KvmUvm::new(
            config,
            Some(BootSpec::Payload(payload)),
            self.virtiofsd.clone(),
        )
    }
}

#[async_trait]
impl Backend for KvmBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        capabilities::matrix(self.virtiofsd.is_some())
    }

    fn supports_guest_os(&self, os: GuestOs) -> bool {
        os == GuestOs::Linux
    }

    fn check_available(&self) -> Result<()> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
            .map_err(|e| Error::io("read /proc/cpuinfo", e))?;
        match unavailable_reason(Path::new("/dev/kvm").exists(), &cpuinfo) {
            None => Ok(()),
            Some(reason) => Err(Error::BackendUnavailable {
                backend: NAME.to_owned(),
                reason: reason.to_string(),
            }),
        }
    }

    async fn create(&self, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        // A boot-time NIC's tap may still be held by a VM that is stopping.
        let vm = retry_while_tap_busy(|| self.create_vm(config.clone())).await?;
        Ok(Box::new(vm))
    }

    async fn restore(&self, _snapshot: &Path) -> Result<Box<dyn Uvm>> {
        Err(Error::ActionNotSupported {
            action: Action::Save,
        })
    }
}

#[cfg(test)]
mod tests {
    use uvm_api::{Operation, Resource};

    use super::*;

    #[test]
    fn availability_needs_dev_kvm_and_vmx_or_svm() {
        assert_eq!(unavailable_reason(true, "flags\t: fpu svm sse\n"), None);
        assert_eq!(unavailable_reason(true, "flags : vmx\n"), None);
        let r = unavailable_reason(true, "flags : fpu sse hypervisor\n").unwrap();
        assert!(r.contains("cannot boot a Linux guest"), "{r}");
        let r = unavailable_reason(false, "flags : vmx\n").unwrap();
        assert!(r.contains("/dev/kvm does not exist"), "{r}");
    }

    #[tokio::test]
    async fn refuses_windows_and_restore() {
        let b = KvmBackend::with_virtiofsd(None);
        let config = UvmConfig::builder("w")
            .guest_os(GuestOs::Windows)
            .build()
            .unwrap();
        assert!(matches!(
            b.create(config).await,
            Err(Error::UnsupportedGuestOs { .. })
        ));
        assert!(matches!(
            b.restore(Path::new("/nonexistent")).await,
            Err(Error::ActionNotSupported {
                action: Action::Save
            })
        ));
        assert_eq!(b.name(), "kvm");
        let resources = b.capabilities().resources;
        assert!(resources.contains(&(Resource::Scsi, Operation::Add)));
        assert!(resources.contains(&(Resource::Network, Operation::Remove)));
        assert!(!resources.contains(&(Resource::VirtioFs, Operation::Add)));
        assert!(!resources.contains(&(Resource::Pci, Operation::Add)));
    }
}
