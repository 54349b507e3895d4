//! PCI device assignment. The guest probe has no view of PCI devices, so
//! these checks cover the host side: ids, removal, refusals.
//!
//! The device assigned is the host path in `UVM_CONFORMANCE_PCI_DEVICE`
//! (for example `/sys/bus/pci/devices/0000:01:00.0`) if set, else a directory
//! in the check's scratch space, which a backend that really assigns devices
//! refuses; such a backend needs the variable set.

use async_trait::async_trait;
use uvm_api::{GuestProbe, PciDevice, Resource, Uvm};

use super::device::{DeviceKind, Seen, Spec, wrong_spec};
use super::plug::Kinds;
use crate::ctx::Ctx;
use crate::fixtures;
use crate::step::{Step, fail};

/// Environment variable naming a host PCI device the checks may assign.
pub const PCI_DEVICE_ENV: &str = "UVM_CONFORMANCE_PCI_DEVICE";

/// PCI devices `pci<n>`.
pub(crate) struct PciKind;

/// The PCI kind, for the generic checks.
pub(crate) static KINDS: Kinds = &[&PciKind];

fn device(spec: &Spec) -> Option<&PciDevice> {
    match spec {
        Spec::Pci(d) => Some(d),
        _ => None,
    }
}

impl PciKind {
    fn make(&self, ctx: &Ctx, n: u32, function: Option<u16>) -> Step<Spec> {
        let host_path = match std::env::var_os(PCI_DEVICE_ENV) {
            Some(path) => path.into(),
            None => fixtures::folder(ctx.scratch(), &fixtures::unique(&format!("pci-{n}")), &[])?,
        };
        Ok(Spec::Pci(PciDevice {
            id: format!("pci{n}"),
            host_path,
            virtual_function: function,
        }))
    }
}

#[async_trait]
impl DeviceKind for PciKind {
    fn resource(&self) -> Resource {
        Resource::Pci
    }

    fn noun(&self) -> &'static str {
        "PCI device"
    }

    fn fixture(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, None)
    }

    fn variant(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, Some(1))
    }

    fn id(&self, spec: &Spec) -> String {
        device(spec).map(|d| d.id.clone()).unwrap_or_default()
    }

    async fn prepare(&self, _vm: &dyn Uvm) -> Step {
        Ok(())
    }

    async fn add(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<()>> {
        let d = device(spec)?.clone();
        Some(vm.pci()?.add_device(d).await)
    }

    async fn remove(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<uvm_api::Removal>> {
        let d = device(spec)?;
        Some(vm.pci()?.remove_device(&d.id).await)
    }

    fn has_manager(&self, vm: &dyn Uvm) -> bool {
        vm.pci().is_some()
    }

    fn observable(&self) -> bool {
        false
    }

    async fn seen(&self, _probe: &dyn GuestProbe, spec: &Spec) -> Step<Option<Seen>> {
        device(spec).ok_or_else(|| wrong_spec(self, spec))?;
        Ok(None)
    }

    fn expected(&self, spec: &Spec) -> Step<Seen> {
        Err(fail(format!(
            "conformance suite bug: PCI device {} has no guest view",
            self.id(spec)
        )))
    }
}

super::device_checks!(Pci, KINDS;
    pci_cold_plug_visible_after_start,
    pci_hot_add_visible_in_guest,
    pci_cold_and_hot_plug_agree,
    pci_same_id_twice_already_exists,
    pci_changes_while_paused_invalid_state,
    pci_changes_after_stop_invalid_state,
    pci_hot_remove_completes,
    pci_cold_remove_before_start,
    pci_remove_then_readd_same_id,
    pci_double_remove_not_found,
    pci_remove_unknown_not_found,
    pci_id_reserved_until_removal_completes,
);

super::kind_check!(
    Pci,
    pci_remove_while_releasing_not_found,
    "removing a device again while its removal is pending gives NotFound, and the first removal still completes",
    KINDS,
    super::unplug::remove_while_releasing
);
