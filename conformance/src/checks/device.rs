//! One interface over every kind of device a VM can be given (SCSI disk,
//! VPMem device, NIC, shared folder, PCI device), so that the plug and unplug
//! rules are written once in [`super::plug`] and checked for each kind.

use async_trait::async_trait;
use uvm_api::{
    GuestProbe, MacAddress, Nic, Operation, PciDevice, Removal, ScsiDisk, SharedFolder, Uvm,
    VpmemDevice,
};

use super::support::eventually;
use crate::ctx::Ctx;
use crate::step::{Step, fail};

/// A device description, as passed to its manager.
#[derive(Debug, Clone)]
pub(crate) enum Spec {
    /// A SCSI disk.
    Scsi(ScsiDisk),
    /// A VPMem device.
    Vpmem(VpmemDevice),
    /// A NIC.
    Nic(Nic),
    /// A shared folder.
    Share(SharedFolder),
    /// A PCI device.
    Pci(PciDevice),
}

/// What the guest shows of a device, without the names the guest chose, so
/// that two VMs' views of the same device compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A block device: its SCSI address, size, mode and a digest of sampled contents.
    Disk {
        address: Option<(u8, u8)>,
        size: u64,
        read_only: bool,
        content: u64,
    },
    /// A persistent-memory device: its size.
    Pmem { size: u64 },
    /// A network interface.
    Nic { mac: MacAddress, link_up: bool },
    /// A share: its tag, mode, and each visible file with a digest of its contents.
    Share {
        tag: String,
        read_only: bool,
        files: Vec<(String, u64)>,
    },
}

/// A kind of device and how to attach, detach and observe it.
#[async_trait]
pub(crate) trait DeviceKind: Send + Sync {
    /// The resource it is accounted under.
    fn resource(&self) -> uvm_api::Resource;

    /// How messages name one such device ("SCSI disk").
    fn noun(&self) -> &'static str;

    /// Device number `n` of a check: a distinct id and distinct contents for each `n`,
    /// with host material made in the check's scratch directory (a new copy each call).
    fn fixture(&self, ctx: &Ctx, n: u32) -> Step<Spec>;

    /// A device with the same id as `fixture(n)` and other contents.
    fn variant(&self, ctx: &Ctx, n: u32) -> Step<Spec>;

    /// The id of the device, as removals and `NotFound` name it.
    fn id(&self, spec: &Spec) -> String;

    /// What must be in place before devices can be added (controllers). Only
    /// called when the add operation is claimed.
    async fn prepare(&self, vm: &dyn Uvm) -> Step;

    /// Adds the device; `None` if the VM has no manager for it.
    async fn add(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<()>>;

    /// Removes the device; `None` if the VM has no manager for it.
    async fn remove(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<Removal>>;

    /// Other calls that are the add operation of this resource (adding a
    /// controller); `None` if there are none or no manager.
    async fn add_other(&self, _vm: &dyn Uvm) -> Option<uvm_api::Result<()>> {
        None
    }

    /// Puts the device in `config` as a boot-time device; false if this kind has no boot-time form.
    fn boot(&self, _config: &mut uvm_api::UvmConfig, _spec: &Spec) -> bool {
        false
    }

    /// The same device as `spec` as the guest sees it, for a second VM
    /// running at the same time: host resources one VM holds exclusively
    /// (a tap) are swapped for others. The default is `spec` itself.
    fn for_another_vm(&self, spec: &Spec) -> Spec {
        spec.clone()
    }

    /// Whether the VM has the manager this kind is added through.
    fn has_manager(&self, vm: &dyn Uvm) -> bool;

    /// Whether the guest probe can see this kind of device at all.
    fn observable(&self) -> bool {
        true
    }

    /// What the guest sees of the device now; `None` if it does not see it.
    async fn seen(&self, probe: &dyn GuestProbe, spec: &Spec) -> Step<Option<Seen>>;

    /// What the guest should see of the device, from the host side.
    fn expected(&self, spec: &Spec) -> Step<Seen>;
}

/// Fails a step with an error of the guest probe.
pub(crate) fn probe_failed(what: &str, e: uvm_api::Error) -> crate::outcome::Outcome {
    fail(format!(
        "guest probe {what}: expected success, got {}",
        crate::step::describe(&e)
    ))
}

/// Fails: a spec of the wrong kind reached a kind (a bug of the suite).
pub(crate) fn wrong_spec(kind: &dyn DeviceKind, spec: &Spec) -> crate::outcome::Outcome {
    fail(format!(
        "conformance suite bug: {} got a spec {spec:?}",
        kind.noun()
    ))
}

/// Waits until the guest sees the device as expected; fails with what it sees otherwise.
pub(crate) async fn wait_seen(
    ctx: &Ctx,
    kind: &dyn DeviceKind,
    probe: &dyn GuestProbe,
    spec: &Spec,
    after: &str,
) -> Step<Seen> {
    let expected = kind.expected(spec)?;
    let (found, last) = eventually(ctx.settings().guest_timeout, || async {
        let seen = kind.seen(probe, spec).await?;
        Ok((seen.as_ref() == Some(&expected), seen))
    })
    .await?;
    if found {
        return Ok(expected);
    }
    let limit = ctx.settings().guest_timeout;
    match last {
        None => Err(fail(format!(
            "after {after}: expected the guest to see {} {} as {expected:?}; it never saw it (waited {limit:?})",
            kind.noun(),
            kind.id(spec)
        ))),
        Some(seen) => Err(fail(format!(
            "after {after}: expected the guest to see {} {} as {expected:?}; it sees {seen:?}",
            kind.noun(),
            kind.id(spec)
        ))),
    }
}

/// Waits until the guest no longer sees the device.
pub(crate) async fn wait_gone(
    ctx: &Ctx,
    kind: &dyn DeviceKind,
    probe: &dyn GuestProbe,
    spec: &Spec,
    after: &str,
) -> Step {
    let (gone, ()) = eventually(ctx.settings().guest_timeout, || async {
        Ok((kind.seen(probe, spec).await?.is_none(), ()))
    })
    .await?;
    match gone {
        true => Ok(()),
        false => Err(fail(format!(
            "after {after}: expected the guest no longer to see {} {}; it still does after {:?}",
            kind.noun(),
            kind.id(spec),
            ctx.settings().guest_timeout
        ))),
    }
}

/// Fails if the guest sees the device (checked once: for devices that must never appear).
pub(crate) async fn expect_unseen(
    kind: &dyn DeviceKind,
    probe: &dyn GuestProbe,
    spec: &Spec,
    after: &str,
) -> Step {
    if let Some(seen) = kind.seen(probe, spec).await? {
        return Err(fail(format!(
            "after {after}: expected the guest not to see {} {}; it sees {seen:?}",
            kind.noun(),
            kind.id(spec)
        )));
    }
    Ok(())
}

/// Whether the VM claims `operation` for this kind; fails if it claims it without the manager.
pub(crate) fn claims(kind: &dyn DeviceKind, vm: &dyn Uvm, operation: Operation) -> Step<bool> {
    let resource = kind.resource();
    let claimed = vm.supported(resource, operation);
    if claimed && !kind.has_manager(vm) {
        return Err(fail(format!(
            "supported({resource}, {operation}) is true but the VM provides no manager for {resource}"
        )));
    }
    Ok(claimed)
}

/// Adds a device the VM claims to be able to add; any failure fails the check.
pub(crate) async fn add_claimed(
    kind: &dyn DeviceKind,
    vm: &dyn Uvm,
    spec: &Spec,
    what: &str,
) -> Step {
    match kind.add(vm, spec).await {
        None => Err(fail(format!(
            "{what}: the VM has no manager for {}",
            kind.resource()
        ))),
        Some(result) => {
            let what = format!("{what} ({} {})", kind.noun(), kind.id(spec));
            crate::step::Must::must(result, &what)
        }
    }
}

/// Removes a device the VM claims to be able to remove; checks the handle names it.
pub(crate) async fn remove_claimed(
    kind: &dyn DeviceKind,
    vm: &dyn Uvm,
    spec: &Spec,
    what: &str,
) -> Step<Removal> {
    let what = format!("{what} ({} {})", kind.noun(), kind.id(spec));
    let removal = match kind.remove(vm, spec).await {
        None => {
            return Err(fail(format!(
                "{what}: the VM has no manager for {}",
                kind.resource()
            )));
        }
        Some(result) => crate::step::Must::must(result, &what)?,
    };
    if removal.resource() != kind.resource() || removal.id() != kind.id(spec) {
        return Err(fail(format!(
            "{what}: expected a removal handle for {} {}, got one for {} {}",
            kind.resource(),
            kind.id(spec),
            removal.resource(),
            removal.id()
        )));
    }
    Ok(removal)
}
