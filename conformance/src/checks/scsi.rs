//! SCSI: controllers and disks, checked through the guest's block devices.

use async_trait::async_trait;
use uvm_api::config::MAX_SCSI_CONTROLLERS;
use uvm_api::{
    DiskFormat, GuestProbe, Operation, Resource, ScsiDisk, ScsiManager, State, Uvm, UvmConfig,
};

use super::device::{
    DeviceKind, Seen, Spec, add_claimed, claims, probe_failed, wait_seen, wrong_spec,
};
use super::plug::{Kinds, refuse_add, unclaimed_op};
use super::support::{Before, Claim, claim, complete, create, created_and_running, probe, refused};
use crate::ctx::Ctx;
use crate::fixtures::{self, DISK_SIZE, SAMPLE_LEN, digest, read_host, sample_offsets};
use crate::step::{Must, Step, Want, bail, ensure, expect_any_err, expect_err, fail};

/// SCSI disks on controller 0, LUN = device number.
pub(crate) struct ScsiKind;

/// The SCSI kind, for the generic checks.
pub(crate) static KINDS: Kinds = &[&ScsiKind];

fn disk(spec: &Spec) -> Option<&ScsiDisk> {
    match spec {
        Spec::Scsi(d) => Some(d),
        _ => None,
    }
}

impl ScsiKind {
    fn make(&self, ctx: &Ctx, n: u32, seed: u32) -> Step<Spec> {
        let lun = u8::try_from(n).map_err(|_| fail(format!("conformance suite bug: LUN {n}")))?;
        let path = fixtures::image(
            ctx.scratch(),
            &fixtures::unique(&format!("disk-{n}")),
            DISK_SIZE,
            seed,
        )?;
        Ok(Spec::Scsi(ScsiDisk {
            controller: 0,
            lun,
            path,
            format: DiskFormat::Raw,
            read_only: false,
        }))
    }

    fn get<'a>(&self, spec: &'a Spec) -> Step<&'a ScsiDisk> {
        disk(spec).ok_or_else(|| wrong_spec(self, spec))
    }
}

/// Finds the guest's block device at a SCSI address.
pub(crate) async fn guest_disk(
    probe: &dyn GuestProbe,
    address: (u8, u8),
) -> Step<Option<uvm_api::GuestBlockDevice>> {
    let devices = probe
        .block_devices()
        .await
        .map_err(|e| probe_failed("block_devices", e))?;
    Ok(devices
        .into_iter()
        .find(|d| d.scsi_address == Some(address)))
}

#[async_trait]
impl DeviceKind for ScsiKind {
    fn resource(&self) -> Resource {
        Resource::Scsi
    }

    fn noun(&self) -> &'static str {
        "SCSI disk"
    }

    fn fixture(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, n)
    }

    fn variant(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, n + 1000)
    }

    fn id(&self, spec: &Spec) -> String {
        disk(spec).map(ScsiDisk::address).unwrap_or_default()
    }

    fn boot(&self, config: &mut UvmConfig, spec: &Spec) -> bool {
        match disk(spec) {
            Some(d) => {
                config.devices.scsi_controllers = config.devices.scsi_controllers.max(1);
                config.devices.scsi_disks.push(d.clone());
                true
            }
            None => false,
        }
    }

    async fn prepare(&self, vm: &dyn Uvm) -> Step {
        let Some(scsi) = vm.scsi() else {
            bail!("the VM claims SCSI but has no SCSI manager");
        };
        match scsi.add_controller(0).await {
            Ok(()) | Err(uvm_api::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e).must("adding SCSI controller 0"),
        }
    }

    async fn add(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<()>> {
        let d = disk(spec)?.clone();
        Some(vm.scsi()?.add_disk(d).await)
    }

    async fn remove(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<uvm_api::Removal>> {
        let d = disk(spec)?;
        Some(vm.scsi()?.remove_disk(d.controller, d.lun).await)
    }

    async fn add_other(&self, vm: &dyn Uvm) -> Option<uvm_api::Result<()>> {
        Some(vm.scsi()?.add_controller(1).await)
    }

    fn has_manager(&self, vm: &dyn Uvm) -> bool {
        vm.scsi().is_some()
    }

    async fn seen(&self, probe: &dyn GuestProbe, spec: &Spec) -> Step<Option<Seen>> {
        let d = self.get(spec)?;
        let Some(dev) = guest_disk(probe, (d.controller, d.lun)).await? else {
            return Ok(None);
        };
        let mut chunks = Vec::new();
        for offset in sample_offsets(dev.size_bytes) {
            let bytes = probe
                .read_block(&dev.name, offset, SAMPLE_LEN)
                .await
                .map_err(|e| probe_failed(&format!("read_block({}, {offset})", dev.name), e))?;
            chunks.push(bytes);
        }
        Ok(Some(Seen::Disk {
            address: dev.scsi_address,
            size: dev.size_bytes,
            read_only: dev.read_only,
            content: digest(&chunks),
        }))
    }

    fn expected(&self, spec: &Spec) -> Step<Seen> {
        let d = self.get(spec)?;
        let host =
            |e: std::io::Error| fail(format!("reading host image {}: {e}", d.path.display()));
        let size = std::fs::metadata(&d.path).map_err(host)?.len();
        let mut chunks = Vec::new();
        for offset in sample_offsets(size) {
            chunks.push(read_host(&d.path, offset, SAMPLE_LEN).map_err(host)?);
        }
        Ok(Seen::Disk {
            address: Some((d.controller, d.lun)),
            size,
            read_only: d.read_only,
            content: digest(&chunks),
        })
    }
}

/// Starts the VM and hot-adds `disk` on SCSI controller 0; if SCSI add is
/// not claimed, checks that it is refused and ends the check unclaimed.
async fn running_with(vm: &dyn Uvm, spec: &Spec) -> Step {
    vm.start().await.must("start")?;
    if !claims(&ScsiKind, vm, Operation::Add)? {
        refuse_add(&ScsiKind, vm, spec, "a hot add").await?;
        return Err(unclaimed_op(&ScsiKind, Operation::Add));
    }
    ScsiKind.prepare(vm).await?;
    add_claimed(&ScsiKind, vm, spec, "adding while running").await
}

async fn read_only_refuses_writes(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let mut spec = ScsiKind.fixture(&ctx, 1)?;
    if let Spec::Scsi(d) = &mut spec {
        d.read_only = true;
    }
    running_with(&*vm, &spec).await?;
    let probe = probe(&*vm)?;
    wait_seen(&ctx, &ScsiKind, probe, &spec, "hot-adding a read-only disk").await?;
    let d = ScsiKind.get(&spec)?;
    let Some(dev) = guest_disk(probe, (d.controller, d.lun)).await? else {
        bail!("the read-only disk vanished from the guest");
    };
    let original =
        read_host(&d.path, 0, 512).map_err(|e| fail(format!("reading the image: {e}")))?;
    let written = probe.write_block(&dev.name, 0, &[0x5a; 512]).await;
    ensure!(
        written.is_err(),
        "writing to read-only disk {} from the guest: expected an error, the write succeeded",
        d.address()
    );
    let now = read_host(&d.path, 0, 512).map_err(|e| fail(format!("reading the image: {e}")))?;
    ensure!(
        now == original,
        "a refused guest write to read-only disk {} changed the host image",
        d.address()
    );
    Ok(())
}

async fn writes_reach_host(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let spec = ScsiKind.fixture(&ctx, 1)?;
    running_with(&*vm, &spec).await?;
    let probe = probe(&*vm)?;
    wait_seen(&ctx, &ScsiKind, probe, &spec, "hot-adding a writable disk").await?;
    let d = ScsiKind.get(&spec)?;
    let Some(dev) = guest_disk(probe, (d.controller, d.lun)).await? else {
        bail!("the writable disk vanished from the guest");
    };
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 ^ 0xa5).collect();
    let offset = 8192;
    probe
        .write_block(&dev.name, offset, &data)
        .await
        .map_err(|e| probe_failed("write_block on a writable disk", e))?;
    let back = probe
        .read_block(&dev.name, offset, data.len() as u64)
        .await
        .map_err(|e| probe_failed("read_block after a write", e))?;
    ensure!(
        back == data,
        "the guest read back other bytes than it wrote to disk {}",
        d.address()
    );
    let host = read_host(&d.path, offset, data.len() as u64)
        .map_err(|e| fail(format!("reading the image: {e}")))?;
    ensure!(
        host == data,
        "a guest write to disk {} at offset {offset} did not reach the host image",
        d.address()
    );
    Ok(())
}

async fn controller_twice(ctx: Ctx) -> Step {
    created_and_running(|state| controller_twice_in(&ctx, state)).await
}

/// The VM's SCSI manager if it claims SCSI add. If it does not, checks that
/// adding controller `controller` is refused (where there is a manager to
/// call) and ends the check unclaimed.
async fn scsi_for_add(vm: &dyn Uvm, controller: u8) -> Step<&dyn ScsiManager> {
    match claim(vm, Resource::Scsi, Operation::Add, vm.scsi())? {
        Claim::Yes(scsi) => Ok(scsi),
        Claim::No(scsi) => {
            if let Some(scsi) = scsi {
                let before = Before::take(vm).await?;
                refused(
                    vm,
                    &before,
                    &format!("adding SCSI controller {controller}"),
                    Resource::Scsi,
                    Operation::Add,
                    Some(scsi.add_controller(controller).await),
                )
                .await?;
            }
            Err(unclaimed_op(&ScsiKind, Operation::Add))
        }
    }
}

async fn controller_twice_in(ctx: &Ctx, state: State) -> Step {
    let vm = create(ctx).await?;
    super::support::reach(&*vm, state).await?;
    let scsi = scsi_for_add(&*vm, 0).await?;
    scsi.add_controller(0)
        .await
        .must(&format!("adding SCSI controller 0 ({state})"))?;
    expect_err(
        &format!("adding SCSI controller 0 a second time ({state})"),
        scsi.add_controller(0).await,
        Want::AlreadyExists(Resource::Scsi),
    )?;
    Ok(())
}

async fn controller_limit(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let scsi = scsi_for_add(&*vm, MAX_SCSI_CONTROLLERS).await?;
    let before = Before::take(&*vm).await?;
    let what = format!(
        "adding SCSI controller {MAX_SCSI_CONTROLLERS} (the contract allows 0..{MAX_SCSI_CONTROLLERS})"
    );
    let result = scsi.add_controller(MAX_SCSI_CONTROLLERS).await;
    expect_any_err(&what, result, &[Want::LimitReached, Want::InvalidArgument])?;
    before.unchanged(&*vm, &what).await
}

async fn missing_controller(ctx: Ctx) -> Step {
    created_and_running(|state| missing_controller_in(&ctx, state)).await
}

async fn missing_controller_in(ctx: &Ctx, state: State) -> Step {
    let vm = create(ctx).await?;
    super::support::reach(&*vm, state).await?;
    let mut spec = ScsiKind.fixture(ctx, 1)?;
    if let Spec::Scsi(d) = &mut spec {
        d.controller = 2;
    }
    if !claims(&ScsiKind, &*vm, Operation::Add)? {
        refuse_add(&ScsiKind, &*vm, &spec, "an add").await?;
        return Err(unclaimed_op(&ScsiKind, Operation::Add));
    }
    let before = Before::take(&*vm).await?;
    let what = format!("adding a disk on controller 2, which was never added ({state})");
    expect_err(
        &what,
        ScsiKind.add(&*vm, &spec).await.unwrap_or(Ok(())),
        Want::NotFound(Resource::Scsi),
    )?;
    before.unchanged(&*vm, &what).await
}

async fn busy_controller(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let spec = ScsiKind.fixture(&ctx, 1)?;
    running_with(&*vm, &spec).await?;
    let Some(scsi) = vm.scsi() else {
        bail!("the VM claims SCSI but has no SCSI manager");
    };
    let before = Before::take(&*vm).await?;
    let what = "removing SCSI controller 0 while it holds disk 0:1";
    let result = scsi.remove_controller(0).await;
    if !vm.supported(Resource::Scsi, Operation::Remove) {
        refused(
            &*vm,
            &before,
            what,
            Resource::Scsi,
            Operation::Remove,
            Some(result),
        )
        .await?;
        return Err(unclaimed_op(&ScsiKind, Operation::Remove));
    }
    expect_err(what, result, Want::InvalidArgument)?;
    before.unchanged(&*vm, what).await?;
    if let Ok(p) = probe(&*vm) {
        wait_seen(&ctx, &ScsiKind, p, &spec, what).await?;
    }
    Ok(())
}

async fn empty_controller_removal(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let remove = vm.supported(Resource::Scsi, Operation::Remove);
    let scsi = match scsi_for_add(&*vm, 0).await {
        Ok(scsi) => scsi,
        Err(end) => {
            if end.is_unclaimed()
                && remove
                && let Some(scsi) = vm.scsi()
            {
                expect_err(
                    "removing SCSI controller 0, never added",
                    scsi.remove_controller(0).await,
                    Want::NotFound(Resource::Scsi),
                )?;
            }
            return Err(end);
        }
    };
    let spec = ScsiKind.fixture(&ctx, 1)?;
    scsi.add_controller(0)
        .await
        .must("adding SCSI controller 0")?;
    let before = Before::take(&*vm).await?;
    let result = scsi.remove_controller(0).await;
    if !remove {
        refused(
            &*vm,
            &before,
            "removing empty SCSI controller 0",
            Resource::Scsi,
            Operation::Remove,
            Some(result),
        )
        .await?;
        return Err(unclaimed_op(&ScsiKind, Operation::Remove));
    }
    let removal = result.must("removing empty SCSI controller 0")?;
    complete(&ctx, &removal, "removing empty SCSI controller 0").await?;
    expect_err(
        "adding a disk on SCSI controller 0 after the controller was removed",
        ScsiKind.add(&*vm, &spec).await.unwrap_or(Ok(())),
        Want::NotFound(Resource::Scsi),
    )?;
    Ok(())
}

async fn remove_unknown_controller(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let last = MAX_SCSI_CONTROLLERS - 1;
    let scsi = match claim(&*vm, Resource::Scsi, Operation::Remove, vm.scsi())? {
        Claim::Yes(scsi) => scsi,
        Claim::No(scsi) => {
            if let Some(scsi) = scsi {
                let before = Before::take(&*vm).await?;
                refused(
                    &*vm,
                    &before,
                    &format!("removing SCSI controller {last}"),
                    Resource::Scsi,
                    Operation::Remove,
                    Some(scsi.remove_controller(last).await),
                )
                .await?;
            }
            return Err(unclaimed_op(&ScsiKind, Operation::Remove));
        }
    };
    let before = Before::take(&*vm).await?;
    let what = format!("removing SCSI controller {last}, which was never added");
    expect_err(
        &what,
        scsi.remove_controller(last).await,
        Want::NotFound(Resource::Scsi),
    )?;
    before.unchanged(&*vm, &what).await?;
    if vm.supported(Resource::Scsi, Operation::Add) {
        scsi.add_controller(0)
            .await
            .must("adding SCSI controller 0")?;
        let removal = scsi
            .remove_controller(0)
            .await
            .must("removing empty SCSI controller 0")?;
        complete(&ctx, &removal, "removing empty SCSI controller 0").await?;
        expect_err(
            "removing SCSI controller 0 again, after its removal completed",
            scsi.remove_controller(0).await,
            Want::NotFound(Resource::Scsi),
        )?;
        // The refusals changed nothing: the controller never added can be added.
        scsi.add_controller(last)
            .await
            .must(&format!("adding SCSI controller {last} after the refusals"))?;
    }
    Ok(())
}

async fn remove_on_last_controller(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let last = MAX_SCSI_CONTROLLERS - 1;
    let near = ScsiKind.fixture(&ctx, 5)?;
    let mut far = ScsiKind.variant(&ctx, 5)?;
    if let Spec::Scsi(d) = &mut far {
        d.controller = last;
    }
    super::unplug::removable(&ScsiKind, &*vm, &near).await?;
    let Some(scsi) = vm.scsi() else {
        bail!("the VM claims SCSI but has no SCSI manager");
    };
    ScsiKind.prepare(&*vm).await?;
    scsi.add_controller(last)
        .await
        .must(&format!("adding SCSI controller {last}"))?;
    add_claimed(&ScsiKind, &*vm, &near, "adding disk 0:5").await?;
    add_claimed(&ScsiKind, &*vm, &far, &format!("adding disk {last}:5")).await?;
    let removal = super::device::remove_claimed(
        &ScsiKind,
        &*vm,
        &far,
        &format!("removing disk {last}:5 while 0:5 is attached"),
    )
    .await?;
    complete(&ctx, &removal, &format!("removing disk {last}:5")).await?;
    let mut other = ScsiKind.variant(&ctx, 5)?;
    if let Spec::Scsi(d) = &mut other {
        d.controller = 0;
    }
    expect_err(
        &format!("adding another disk at 0:5 after removing {last}:5"),
        ScsiKind.add(&*vm, &other).await.unwrap_or(Ok(())),
        Want::AlreadyExists(Resource::Scsi),
    )?;
    add_claimed(
        &ScsiKind,
        &*vm,
        &far,
        &format!("re-adding disk {last}:5 after its removal completed"),
    )
    .await
}

async fn high_luns(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let top = uvm_api::config::MAX_LUNS_PER_CONTROLLER - 1;
    let specs = [top / 2, top]
        .into_iter()
        .map(|lun| ScsiKind.fixture(&ctx, u32::from(lun)))
        .collect::<Step<Vec<_>>>()?;
    super::unplug::removable(&ScsiKind, &*vm, &specs[1]).await?;
    ScsiKind.prepare(&*vm).await?;
    for spec in &specs {
        add_claimed(&ScsiKind, &*vm, spec, "adding a disk at a high LUN").await?;
    }
    let removal = super::device::remove_claimed(
        &ScsiKind,
        &*vm,
        &specs[1],
        "removing the disk at the top LUN",
    )
    .await?;
    complete(&ctx, &removal, "removing the disk at the top LUN").await?;
    expect_err(
        &format!("adding another disk at 0:{} while it holds a disk", top / 2),
        ScsiKind
            .add(&*vm, &ScsiKind.variant(&ctx, u32::from(top / 2))?)
            .await
            .unwrap_or(Ok(())),
        Want::AlreadyExists(Resource::Scsi),
    )?;
    add_claimed(
        &ScsiKind,
        &*vm,
        &specs[1],
        "re-adding the disk at the top LUN after its removal completed",
    )
    .await
}

async fn refused_format(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let mut odd = ScsiKind.fixture(&ctx, 1)?;
    if let Spec::Scsi(d) = &mut odd {
        d.format = DiskFormat::Qcow2;
    }
    if !claims(&ScsiKind, &*vm, Operation::Add)? {
        refuse_add(&ScsiKind, &*vm, &odd, "a hot add").await?;
        return Err(unclaimed_op(&ScsiKind, Operation::Add));
    }
    ScsiKind.prepare(&*vm).await?;
    let before = Before::take(&*vm).await?;
    let what = "adding a raw image declared as qcow2";
    match ScsiKind.add(&*vm, &odd).await.unwrap_or(Ok(())) {
        Ok(()) => {
            // The backend serves qcow2 and will find out when the guest reads; the
            // disk is attached, so detach it to leave the LUN free.
            if vm.supported(Resource::Scsi, Operation::Remove) {
                let removal = ScsiKind
                    .remove(&*vm, &odd)
                    .await
                    .unwrap_or_else(|| Ok(uvm_api::Removal::completed(Resource::Scsi, "")))
                    .must("removing it again")?;
                complete(&ctx, &removal, "removing it again").await?;
            }
            Ok(())
        }
        Err(e) => {
            ensure!(
                matches!(
                    e,
                    uvm_api::Error::NotSupported { .. }
                        | uvm_api::Error::InvalidArgument { .. }
                        | uvm_api::Error::Io { .. }
                ),
                "{what}: expected success, NotSupported, InvalidArgument or Io, got {}",
                crate::step::describe(&e)
            );
            before.unchanged(&*vm, what).await?;
            let raw = ScsiKind.fixture(&ctx, 1)?;
            add_claimed(
                &ScsiKind,
                &*vm,
                &raw,
                "adding a raw disk at the same LUN after the refusal",
            )
            .await?;
            if let Ok(p) = probe(&*vm) {
                wait_seen(&ctx, &ScsiKind, p, &raw, "the refused add and a raw add").await?;
            }
            Ok(())
        }
    }
}

super::device_checks!(Scsi, KINDS;
    scsi_cold_plug_visible_after_start,
    scsi_hot_add_visible_in_guest,
    scsi_cold_and_hot_plug_agree,
    scsi_same_lun_twice_already_exists,
    scsi_changes_while_paused_invalid_state,
    scsi_changes_after_stop_invalid_state,
    scsi_hot_remove_leaves_guest,
    scsi_cold_remove_before_start,
    scsi_remove_then_readd_same_lun,
    scsi_double_remove_not_found,
    scsi_remove_unknown_not_found,
    scsi_lun_reserved_until_removal_completes,
);

super::boot_check!(Scsi, scsi_boot_config_disk_visible, KINDS);

super::kind_check!(
    Scsi,
    scsi_remove_while_releasing_not_found,
    "removing a disk again while its removal is pending gives NotFound, and the first removal still completes",
    KINDS,
    super::unplug::remove_while_releasing
);

super::check!(
    Scsi,
    scsi_read_only_disk_refuses_guest_writes,
    "a read-only disk is read-only in the guest, and a guest write neither succeeds nor reaches the image",
    read_only_refuses_writes
);

super::check!(
    Scsi,
    scsi_guest_writes_reach_host_image,
    "what the guest writes to a writable disk reads back the same and is in the host image",
    writes_reach_host
);

super::check!(
    Scsi,
    scsi_controller_twice_already_exists,
    "adding a controller that is there gives AlreadyExists",
    controller_twice
);

super::check!(
    Scsi,
    scsi_controller_beyond_limit_refused,
    "adding a controller beyond the contract's maximum gives LimitReached and changes nothing",
    controller_limit
);

super::check!(
    Scsi,
    scsi_disk_on_missing_controller_not_found,
    "adding a disk on a controller that was never added gives NotFound",
    missing_controller
);

super::check!(
    Scsi,
    scsi_busy_controller_removal_invalid_argument,
    "removing a controller that holds disks gives InvalidArgument and the disks stay",
    busy_controller
);

super::check!(
    Scsi,
    scsi_empty_controller_removal_completes,
    "an empty controller can be removed; disks cannot be added to it afterwards (NotFound)",
    empty_controller_removal
);

super::check!(
    Scsi,
    scsi_refused_format_changes_nothing,
    "a format the backend refuses leaves the LUN free for a disk it serves",
    refused_format
);

super::check!(
    Scsi,
    scsi_remove_unknown_controller_not_found,
    "removing a controller that was never added, or whose removal completed, gives NotFound and changes nothing",
    remove_unknown_controller
);

super::check!(
    Scsi,
    scsi_remove_disk_names_its_controller,
    "remove_disk(controller, lun) detaches the disk at that address: removing 3:5 frees 3:5 and leaves 0:5",
    remove_on_last_controller
);

super::check!(
    Scsi,
    scsi_high_luns_remove_and_readd_at_own_address,
    "LUNs 31 and 63 hold two disks, each removed and re-added at its own address",
    high_luns
);
