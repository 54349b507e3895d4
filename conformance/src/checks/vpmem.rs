//! VPMem: the controller's limits and the devices under them, checked through
//! the guest's persistent-memory devices (told apart by size).

use async_trait::async_trait;
use uvm_api::{
    GuestProbe, ImageFormat, Operation, Resource, State, Uvm, UvmConfig, VpmemController,
    VpmemDevice,
};

use super::device::{DeviceKind, Seen, Spec, claims, probe_failed, wrong_spec};
use super::plug::{Kinds, refuse_add, unclaimed_op};
use super::support::{Before, create, reach, refused};
use crate::ctx::Ctx;
use crate::fixtures::{self, pmem_size};
use crate::step::{Must, Parts, Step, Want, bail, expect_err, fail};

/// The controller the checks set: room for 16 devices of up to 64 MiB.
pub(crate) const CONTROLLER: VpmemController = VpmemController {
    max_devices: 16,
    max_size_bytes: 64 << 20,
};

/// VPMem devices at slot = device number, each image a distinct size.
pub(crate) struct VpmemKind;

/// The VPMem kind, for the generic checks.
pub(crate) static KINDS: Kinds = &[&VpmemKind];

fn device(spec: &Spec) -> Option<&VpmemDevice> {
    match spec {
        Spec::Vpmem(d) => Some(d),
        _ => None,
    }
}

impl VpmemKind {
    fn make(&self, ctx: &Ctx, slot: u32, size: u64, seed: u32) -> Step<Spec> {
        let path = fixtures::image(
            ctx.scratch(),
            &fixtures::unique(&format!("pmem-{slot}")),
            size,
            seed,
        )?;
        Ok(Spec::Vpmem(VpmemDevice {
            id: slot,
            path,
            read_only: true,
            format: ImageFormat::Raw,
        }))
    }
}

#[async_trait]
impl DeviceKind for VpmemKind {
    fn resource(&self) -> Resource {
        Resource::VPMem
    }

    fn noun(&self) -> &'static str {
        "VPMem device"
    }

    fn fixture(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, pmem_size(n), n + 50)
    }

    fn variant(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, pmem_size(n + 8), n + 1050)
    }

    fn id(&self, spec: &Spec) -> String {
        device(spec).map(|d| d.id.to_string()).unwrap_or_default()
    }

    fn boot(&self, config: &mut UvmConfig, spec: &Spec) -> bool {
        match device(spec) {
            Some(d) => {
                config.devices.vpmem = Some(CONTROLLER);
                config.devices.vpmem_devices.push(d.clone());
                true
            }
            None => false,
        }
    }

    async fn prepare(&self, vm: &dyn Uvm) -> Step {
        let Some(vpmem) = vm.vpmem() else {
            bail!("the VM claims VPMem but has no VPMem manager");
        };
        match vpmem.add_controller(CONTROLLER).await {
            Ok(()) | Err(uvm_api::Error::AlreadySet { .. }) => Ok(()),
            Err(e) => Err(e).must("setting the VPMem controller"),
        }
    }

    async fn add(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<()>> {
        let d = device(spec)?.clone();
        Some(vm.vpmem()?.add_device(d).await)
    }

    async fn remove(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<uvm_api::Removal>> {
        let d = device(spec)?;
        Some(vm.vpmem()?.remove_device(d.id).await)
    }

    async fn add_other(&self, vm: &dyn Uvm) -> Option<uvm_api::Result<()>> {
        Some(vm.vpmem()?.add_controller(CONTROLLER).await)
    }

    fn has_manager(&self, vm: &dyn Uvm) -> bool {
        vm.vpmem().is_some()
    }

    async fn seen(&self, probe: &dyn GuestProbe, spec: &Spec) -> Step<Option<Seen>> {
        let d = device(spec).ok_or_else(|| wrong_spec(self, spec))?;
        // Devices are told apart by size; an image that is not there cannot be seen.
        let Ok(meta) = std::fs::metadata(&d.path) else {
            return Ok(None);
        };
        let size = meta.len();
        let devices = probe
            .pmem_devices()
            .await
            .map_err(|e| probe_failed("pmem_devices", e))?;
        Ok(devices
            .into_iter()
            .find(|p| p.size_bytes == size)
            .map(|p| Seen::Pmem { size: p.size_bytes }))
    }

    fn expected(&self, spec: &Spec) -> Step<Seen> {
        let d = device(spec).ok_or_else(|| wrong_spec(self, spec))?;
        let size = std::fs::metadata(&d.path)
            .map_err(|e| fail(format!("reading host image {}: {e}", d.path.display())))?
            .len();
        Ok(Seen::Pmem { size })
    }
}

/// For each of Created and Running: a VM in that state and whether VPMem add is
/// claimed (if not, `f` is not called and the refusal is checked instead).
async fn per_state<F, Fut>(ctx: &Ctx, what: &str, f: F) -> Step
where
    F: Fn(super::support::Vm, State) -> Fut,
    Fut: std::future::Future<Output = Step>,
{
    let mut parts = Parts::default();
    for state in [State::Created, State::Running] {
        let vm = create(ctx).await?;
        reach(&*vm, state).await?;
        if !claims(&VpmemKind, &*vm, Operation::Add)? {
            let spec = VpmemKind.fixture(ctx, 1)?;
            refuse_add(&VpmemKind, &*vm, &spec, what).await?;
            parts.part(Err(unclaimed_op(&VpmemKind, Operation::Add)))?;
            continue;
        }
        parts.part(f(vm, state).await)?;
    }
    parts.end()
}

async fn controller_once(ctx: Ctx) -> Step {
    per_state(&ctx, "an add", |vm, state| async move {
        let Some(vpmem) = vm.vpmem() else {
            bail!("no VPMem manager");
        };
        vpmem
            .add_controller(CONTROLLER)
            .await
            .must(&format!("setting the VPMem controller ({state})"))?;
        let other = VpmemController {
            max_devices: 2,
            max_size_bytes: 1 << 20,
        };
        expect_err(
            &format!("setting the VPMem controller a second time ({state})"),
            vpmem.add_controller(other).await,
            Want::AlreadySet,
        )?;
        Ok(())
    })
    .await
}

async fn needs_controller(ctx: Ctx) -> Step {
    let c = ctx.clone();
    per_state(&ctx, "an add", move |vm, state| {
        let ctx = c.clone();
        async move {
            let spec = VpmemKind.fixture(&ctx, 1)?;
            let before = Before::take(&*vm).await?;
            let what = format!("adding a VPMem device before the controller is set ({state})");
            expect_err(
                &what,
                VpmemKind.add(&*vm, &spec).await.unwrap_or(Ok(())),
                Want::NotFound(Resource::VPMem),
            )?;
            before.unchanged(&*vm, &what).await
        }
    })
    .await
}

async fn slot_beyond_max(ctx: Ctx) -> Step {
    let c = ctx.clone();
    per_state(&ctx, "an add", move |vm, state| {
        let ctx = c.clone();
        async move {
            VpmemKind.prepare(&*vm).await?;
            let spec = VpmemKind.fixture(&ctx, CONTROLLER.max_devices)?;
            let before = Before::take(&*vm).await?;
            let what = format!(
                "adding a VPMem device at slot {} of a controller with {} slots ({state})",
                CONTROLLER.max_devices, CONTROLLER.max_devices
            );
            expect_err(
                &what,
                VpmemKind.add(&*vm, &spec).await.unwrap_or(Ok(())),
                Want::InvalidArgument,
            )?;
            before.unchanged(&*vm, &what).await
        }
    })
    .await
}

async fn image_too_large(ctx: Ctx) -> Step {
    let c = ctx.clone();
    per_state(&ctx, "an add", move |vm, state| {
        let ctx = c.clone();
        async move {
            let Some(vpmem) = vm.vpmem() else {
                bail!("no VPMem manager");
            };
            vpmem
                .add_controller(VpmemController {
                    max_devices: 4,
                    max_size_bytes: 1 << 20,
                })
                .await
                .must("setting a VPMem controller with a 1 MiB size limit")?;
            let spec = VpmemKind.fixture(&ctx, 1)?;
            let before = Before::take(&*vm).await?;
            let what = format!(
                "adding a {} byte VPMem image under a 1 MiB limit ({state})",
                pmem_size(1)
            );
            expect_err(
                &what,
                VpmemKind.add(&*vm, &spec).await.unwrap_or(Ok(())),
                Want::InvalidArgument,
            )?;
            before.unchanged(&*vm, &what).await
        }
    })
    .await
}

/// A VM before start whose VPMem manager claims add; if it does not claim it,
/// checks the refusal and ends the check unclaimed.
async fn created_claimed(ctx: &Ctx, what: &str) -> Step<super::support::Vm> {
    let vm = create(ctx).await?;
    if !claims(&VpmemKind, &*vm, Operation::Add)? {
        let spec = VpmemKind.fixture(ctx, 1)?;
        refuse_add(&VpmemKind, &*vm, &spec, what).await?;
        return Err(unclaimed_op(&VpmemKind, Operation::Add));
    }
    Ok(vm)
}

async fn zero_limit_controller(ctx: Ctx) -> Step {
    let vm = created_claimed(&ctx, "an add").await?;
    let Some(vpmem) = vm.vpmem() else {
        bail!("no VPMem manager");
    };
    for bad in [
        VpmemController {
            max_devices: 0,
            max_size_bytes: CONTROLLER.max_size_bytes,
        },
        VpmemController {
            max_devices: CONTROLLER.max_devices,
            max_size_bytes: 0,
        },
    ] {
        let before = Before::take(&*vm).await?;
        let what = format!(
            "setting a VPMem controller with max_devices {} and max_size_bytes {}",
            bad.max_devices, bad.max_size_bytes
        );
        expect_err(
            &what,
            vpmem.add_controller(bad).await,
            Want::InvalidArgument,
        )?;
        before.unchanged(&*vm, &what).await?;
    }
    vpmem
        .add_controller(CONTROLLER)
        .await
        .must("setting a valid VPMem controller after two refused ones (nothing was set)")?;
    Ok(())
}

async fn limits_inclusive(ctx: Ctx) -> Step {
    let vm = created_claimed(&ctx, "an add").await?;
    let Some(vpmem) = vm.vpmem() else {
        bail!("no VPMem manager");
    };
    let spec = VpmemKind.fixture(&ctx, 1)?;
    let limits = VpmemController {
        max_devices: 2,
        max_size_bytes: pmem_size(1),
    };
    vpmem
        .add_controller(limits)
        .await
        .must("setting a VPMem controller with 2 slots of up to 4 MiB")?;
    super::device::add_claimed(
        &VpmemKind,
        &*vm,
        &spec,
        &format!(
            "adding a {} byte image at slot 1, the last of 2 slots, under a {} byte limit",
            pmem_size(1),
            limits.max_size_bytes
        ),
    )
    .await?;
    expect_err(
        "adding slot 1 again",
        VpmemKind.add(&*vm, &spec).await.unwrap_or(Ok(())),
        Want::AlreadyExists(Resource::VPMem),
    )?;
    Ok(())
}

async fn refused_image_leaves_slot_free(ctx: Ctx) -> Step {
    let vm = created_claimed(&ctx, "an add").await?;
    let Some(vpmem) = vm.vpmem() else {
        bail!("no VPMem manager");
    };
    let limit = pmem_size(2);
    vpmem
        .add_controller(VpmemController {
            max_devices: 4,
            max_size_bytes: limit,
        })
        .await
        .must("setting a VPMem controller with a 6 MiB size limit")?;
    // Slot 1 with the image of device 3 (8 MiB), then with a folder.
    let mut big = VpmemKind.fixture(&ctx, 3)?;
    let mut folder = VpmemKind.fixture(&ctx, 1)?;
    if let (Spec::Vpmem(b), Spec::Vpmem(f)) = (&mut big, &mut folder) {
        b.id = 1;
        f.path = fixtures::folder(ctx.scratch(), &fixtures::unique("pmem-dir"), &[])?;
    }
    for (spec, what) in [
        (
            &big,
            format!(
                "adding a {} byte image at slot 1 under a {limit} byte limit",
                pmem_size(3)
            ),
        ),
        (
            &folder,
            "adding a folder as the image of slot 1".to_string(),
        ),
    ] {
        let before = Before::take(&*vm).await?;
        expect_err(
            &what,
            VpmemKind.add(&*vm, spec).await.unwrap_or(Ok(())),
            Want::InvalidArgument,
        )?;
        before.unchanged(&*vm, &what).await?;
    }
    let fits = VpmemKind.fixture(&ctx, 1)?;
    super::device::add_claimed(
        &VpmemKind,
        &*vm,
        &fits,
        "adding an image that fits at slot 1 after two refused adds there",
    )
    .await
}

async fn controller_refused_when_unclaimed(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    if vm.supported(Resource::VPMem, Operation::Add) {
        return Ok(());
    }
    if let Some(vpmem) = vm.vpmem() {
        let before = Before::take(&*vm).await?;
        refused(
            &*vm,
            &before,
            "setting the VPMem controller",
            Resource::VPMem,
            Operation::Add,
            Some(vpmem.add_controller(CONTROLLER).await),
        )
        .await?;
    }
    Err(unclaimed_op(&VpmemKind, Operation::Add))
}

super::device_checks!(Vpmem, KINDS;
    vpmem_cold_plug_visible_after_start,
    vpmem_hot_add_visible_in_guest,
    vpmem_cold_and_hot_plug_agree,
    vpmem_same_slot_twice_already_exists,
    vpmem_changes_while_paused_invalid_state,
    vpmem_changes_after_stop_invalid_state,
    vpmem_hot_remove_leaves_guest,
    vpmem_cold_remove_before_start,
    vpmem_remove_then_readd_same_slot,
    vpmem_double_remove_not_found,
    vpmem_remove_unknown_not_found,
    vpmem_slot_reserved_until_removal_completes,
);

super::boot_check!(Vpmem, vpmem_boot_config_device_visible, KINDS);

super::kind_check!(
    Vpmem,
    vpmem_remove_while_releasing_not_found,
    "removing a device again while its removal is pending gives NotFound, and the first removal still completes",
    KINDS,
    super::unplug::remove_while_releasing
);

super::check!(
    Vpmem,
    vpmem_controller_set_once,
    "the VPMem controller is set once; setting it again gives AlreadySet",
    controller_once
);

super::check!(
    Vpmem,
    vpmem_device_needs_controller,
    "adding a VPMem device before the controller is set gives NotFound and changes nothing",
    needs_controller
);

super::check!(
    Vpmem,
    vpmem_slot_beyond_max_devices_invalid_argument,
    "a slot at or beyond the controller's max_devices gives InvalidArgument and changes nothing",
    slot_beyond_max
);

super::check!(
    Vpmem,
    vpmem_image_beyond_max_size_invalid_argument,
    "an image larger than the controller's max_size_bytes gives InvalidArgument and changes nothing",
    image_too_large
);

super::check!(
    Vpmem,
    vpmem_controller_refused_when_unclaimed,
    "without VPMem add, setting the controller gives NotSupported",
    controller_refused_when_unclaimed
);

super::check!(
    Vpmem,
    vpmem_zero_limit_controller_invalid_argument,
    "a controller with zero max_devices or zero max_size_bytes gives InvalidArgument and sets nothing",
    zero_limit_controller
);

super::check!(
    Vpmem,
    vpmem_last_slot_of_max_size_accepted,
    "the last slot below max_devices takes an image of exactly max_size_bytes",
    limits_inclusive
);

super::check!(
    Vpmem,
    vpmem_refused_image_leaves_slot_free,
    "an image too large, or a folder, is refused with InvalidArgument and leaves the slot free for an image that fits",
    refused_image_leaves_slot_free
);
