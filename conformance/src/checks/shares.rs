//! Shared folders of each kind (virtio-fs, 9p, VSMB), checked through the
//! guest's mounts: the files it lists and what it reads.

use async_trait::async_trait;
use uvm_api::{GuestProbe, Operation, Resource, ShareKind, SharedFolder, Uvm, UvmConfig};

use super::device::{
    DeviceKind, Seen, Spec, add_claimed, claims, probe_failed, wait_seen, wrong_spec,
};
use super::plug::{Kinds, refuse_add, unclaimed_op};
use super::support::{Before, create, probe, refused};
use crate::capability::Capability;
use crate::ctx::Ctx;
use crate::fixtures::{self, digest, share_files};
use crate::outcome::Outcome;
use crate::step::{Must, Parts, Step, ensure, fail, verdict};

/// Shares of one kind, named `<prefix><n>`, each a folder of three files.
pub(crate) struct ShareDevice {
    kind: ShareKind,
    prefix: &'static str,
}

/// virtio-fs shares.
pub(crate) static VIRTIO_FS: ShareDevice = ShareDevice {
    kind: ShareKind::VirtioFs,
    prefix: "vfs",
};
/// 9p shares.
pub(crate) static PLAN9: ShareDevice = ShareDevice {
    kind: ShareKind::Plan9,
    prefix: "p9-",
};
/// VSMB shares.
pub(crate) static VSMB: ShareDevice = ShareDevice {
    kind: ShareKind::Vsmb,
    prefix: "smb",
};

/// Only virtio-fs, for the per-resource checks.
pub(crate) static VIRTIO_FS_KINDS: Kinds = &[&VIRTIO_FS];
/// Only 9p, for the per-resource checks.
pub(crate) static PLAN9_KINDS: Kinds = &[&PLAN9];
/// Only VSMB, for the per-resource checks.
pub(crate) static VSMB_KINDS: Kinds = &[&VSMB];

/// Every share kind, for the generic checks.
pub(crate) static KINDS: Kinds = &[&VIRTIO_FS, &PLAN9, &VSMB];

fn share(spec: &Spec) -> Option<&SharedFolder> {
    match spec {
        Spec::Share(s) => Some(s),
        _ => None,
    }
}

impl ShareDevice {
    fn make(&self, ctx: &Ctx, n: u32, seed: u32) -> Step<Spec> {
        let dir = fixtures::folder(
            ctx.scratch(),
            &fixtures::unique(&format!("{}{n}", self.prefix)),
            &share_files(seed),
        )?;
        Ok(Spec::Share(SharedFolder {
            kind: self.kind,
            name: format!("{}{n}", self.prefix),
            host_path: dir,
            read_only: true,
            allowed_files: Vec::new(),
        }))
    }

    fn get<'a>(&self, spec: &'a Spec) -> Step<&'a SharedFolder> {
        share(spec).ok_or_else(|| wrong_spec(self, spec))
    }
}

/// The files a share should show: the allowed ones, or every file of the folder.
fn host_files(s: &SharedFolder) -> Step<Vec<(String, u64)>> {
    let host = |e: std::io::Error| {
        fail(format!(
            "reading host folder {}: {e}",
            s.host_path.display()
        ))
    };
    let mut names: Vec<String> = if s.allowed_files.is_empty() {
        std::fs::read_dir(&s.host_path)
            .map_err(host)?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(host)?
    } else {
        s.allowed_files.clone()
    };
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let data = std::fs::read(s.host_path.join(&name)).map_err(host)?;
            Ok((name, digest(&[data])))
        })
        .collect()
}

#[async_trait]
impl DeviceKind for ShareDevice {
    fn resource(&self) -> Resource {
        self.kind.resource()
    }

    fn noun(&self) -> &'static str {
        match self.kind {
            ShareKind::VirtioFs => "virtio-fs share",
            ShareKind::Plan9 => "9p share",
            ShareKind::Vsmb => "VSMB share",
        }
    }

    fn fixture(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, n)
    }

    fn variant(&self, ctx: &Ctx, n: u32) -> Step<Spec> {
        self.make(ctx, n, n + 100)
    }

    fn id(&self, spec: &Spec) -> String {
        share(spec).map(|s| s.name.clone()).unwrap_or_default()
    }

    fn boot(&self, config: &mut UvmConfig, spec: &Spec) -> bool {
        match share(spec) {
            Some(s) => {
                config.devices.shares.push(s.clone());
                true
            }
            None => false,
        }
    }

    async fn prepare(&self, _vm: &dyn Uvm) -> Step {
        Ok(())
    }

    async fn add(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<()>> {
        let s = share(spec)?.clone();
        Some(vm.shared_folders()?.add_share(s).await)
    }

    async fn remove(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<uvm_api::Removal>> {
        let s = share(spec)?;
        Some(vm.shared_folders()?.remove_share(s.kind, &s.name).await)
    }

    fn has_manager(&self, vm: &dyn Uvm) -> bool {
        vm.shared_folders().is_some()
    }

    async fn seen(&self, probe: &dyn GuestProbe, spec: &Spec) -> Step<Option<Seen>> {
        let s = self.get(spec)?;
        let shares = probe
            .shares()
            .await
            .map_err(|e| probe_failed("shares", e))?;
        let Some(found) = shares.into_iter().find(|g| g.tag == s.name) else {
            return Ok(None);
        };
        let names = probe
            .list_share(&s.name)
            .await
            .map_err(|e| probe_failed(&format!("list_share({})", s.name), e))?;
        let mut files = Vec::new();
        for name in names {
            let data = probe
                .read_share_file(&s.name, &name)
                .await
                .map_err(|e| probe_failed(&format!("read_share_file({}, {name})", s.name), e))?;
            files.push((name, digest(&[data])));
        }
        files.sort();
        Ok(Some(Seen::Share {
            tag: found.tag,
            read_only: found.read_only,
            files,
        }))
    }

    fn expected(&self, spec: &Spec) -> Step<Seen> {
        let s = self.get(spec)?;
        Ok(Seen::Share {
            tag: s.name.clone(),
            read_only: s.read_only,
            files: host_files(s)?,
        })
    }
}

/// Runs `f` for each share kind the VM claims to add, on a running VM with
/// that share hot-added as `spec` (after `adjust`); checks the refusal for the others.
async fn for_each_claimed<A, F, Fut>(ctx: &Ctx, adjust: A, f: F) -> Step
where
    A: Fn(&mut SharedFolder),
    F: Fn(super::support::Vm, &'static ShareDevice, Spec) -> Fut,
    Fut: std::future::Future<Output = Step>,
{
    let mut parts = Parts::default();
    for kind in [&VIRTIO_FS, &PLAN9, &VSMB] {
        let vm = create(ctx).await?;
        vm.start().await.must("start")?;
        let mut spec = kind.fixture(ctx, 1)?;
        if let Spec::Share(s) = &mut spec {
            adjust(s);
        }
        if !claims(kind, &*vm, Operation::Add)? {
            refuse_add(kind, &*vm, &spec, "a hot add").await?;
            parts.part(Err(unclaimed_op(kind, Operation::Add)))?;
            continue;
        }
        add_claimed(kind, &*vm, &spec, "adding while running").await?;
        f(vm, kind, spec).await.map_err(|o| match o {
            Outcome::Failed(m) => fail(format!("[{}] {m}", kind.resource())),
            other => other,
        })?;
        parts.part(Ok(()))?;
    }
    parts.end()
}

async fn read_only_refuses_writes(ctx: Ctx) -> Step {
    let c = ctx.clone();
    for_each_claimed(&ctx, |s| s.read_only = true, move |vm, kind, spec| {
        let ctx = c.clone();
        async move {
            let p = probe(&*vm)?;
            wait_seen(&ctx, kind, p, &spec, "hot-adding a read-only share").await?;
            let s = kind.get(&spec)?;
            let written = p.write_share_file(&s.name, "file-0.bin", b"overwritten").await;
            ensure!(written.is_err(), "writing a file of read-only share {} from the guest: expected an error, the write succeeded", s.name);
            let created = p.write_share_file(&s.name, "new.txt", b"new").await;
            ensure!(created.is_err(), "creating a file in read-only share {} from the guest: expected an error, it succeeded", s.name);
            ensure!(!s.host_path.join("new.txt").exists(), "a refused guest write created new.txt in the host folder of {}", s.name);
            let files = share_files(1);
            let host = std::fs::read(s.host_path.join("file-0.bin")).map_err(|e| fail(format!("reading the host file: {e}")))?;
            ensure!(host == files[0].1, "a refused guest write to read-only share {} changed the host file", s.name);
            Ok(())
        }
    })
    .await
}

async fn writes_reach_host(ctx: Ctx) -> Step {
    let c = ctx.clone();
    for_each_claimed(&ctx, |s| s.read_only = false, move |vm, kind, spec| {
        let ctx = c.clone();
        async move {
            let p = probe(&*vm)?;
            wait_seen(&ctx, kind, p, &spec, "hot-adding a writable share").await?;
            let s = kind.get(&spec)?;
            let data = b"written by the guest\n".repeat(10);
            p.write_share_file(&s.name, "from-guest.txt", &data)
                .await
                .map_err(|e| probe_failed("write_share_file on a writable share", e))?;
            let host = std::fs::read(s.host_path.join("from-guest.txt"))
                .map_err(|e| fail(format!("the guest wrote from-guest.txt to share {}, but the host folder has no such file ({e})", s.name)))?;
            ensure!(host == data, "the file the guest wrote to share {} has other contents on the host", s.name);
            let listed = p.list_share(&s.name).await.map_err(|e| probe_failed("list_share", e))?;
            ensure!(listed.iter().any(|f| f == "from-guest.txt"), "the guest does not list the file it wrote: {listed:?}");
            Ok(())
        }
    })
    .await
}

async fn allowed_files_limit_view(ctx: Ctx) -> Step {
    let c = ctx.clone();
    for_each_claimed(
        &ctx,
        |s| s.allowed_files = vec!["file-1.bin".into()],
        move |vm, kind, spec| {
            let ctx = c.clone();
            async move {
                let p = probe(&*vm)?;
                wait_seen(
                    &ctx,
                    kind,
                    p,
                    &spec,
                    "hot-adding a share limited to file-1.bin",
                )
                .await?;
                let s = kind.get(&spec)?;
                let hidden = p.read_share_file(&s.name, "file-0.bin").await;
                ensure!(
                    hidden.is_err(),
                    "share {} allows only file-1.bin, but the guest can read file-0.bin",
                    s.name
                );
                Ok(())
            }
        },
    )
    .await
}

async fn same_name_other_kinds(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    vm.start().await.must("start")?;
    let mut added = Vec::new();
    let mut refused_kinds = Vec::new();
    for kind in [&VIRTIO_FS, &PLAN9, &VSMB] {
        let dir = fixtures::folder(ctx.scratch(), &fixtures::unique("same"), &share_files(9))?;
        let spec = Spec::Share(SharedFolder {
            kind: kind.kind,
            name: "data".into(),
            host_path: dir,
            read_only: true,
            allowed_files: Vec::new(),
        });
        let what = format!(
            "adding {} \"data\" while {} other kinds' shares are called \"data\" too",
            kind.noun(),
            added.len()
        );
        if claims(kind, &*vm, Operation::Add)? {
            add_claimed(kind, &*vm, &spec, &what).await?;
            added.push(kind);
        } else {
            // Refused as unsupported, not as a clash with the other kinds' "data"
            // (the guest's view cannot tell the kinds' "data" shares apart).
            let before = Before::take(&*vm).await?;
            let result = kind.add(&*vm, &spec).await;
            refused(
                &*vm,
                &before,
                &what,
                kind.resource(),
                Operation::Add,
                result,
            )
            .await?;
            refused_kinds.push(Capability::Pair(kind.resource(), Operation::Add));
        }
    }
    // With fewer than two kinds claimed there is nothing to coexist: all the
    // check proved is the other kinds' honest refusal.
    let end = verdict(added.len() >= 2, &refused_kinds);
    let Some(manager) = vm.shared_folders() else {
        return end;
    };
    for kind in &added {
        if vm.supported(kind.resource(), Operation::Remove) {
            let removal = manager
                .remove_share(kind.kind, "data")
                .await
                .must(&format!("removing {} \"data\"", kind.noun()))?;
            ensure!(
                removal.resource() == kind.resource(),
                "removing {} \"data\" gave a removal of {}",
                kind.noun(),
                removal.resource()
            );
            super::support::complete(&ctx, &removal, "removing one of several same-named shares")
                .await?;
        }
    }
    end
}

/// A share called `name` of `kind`, a folder of its own.
fn named(ctx: &Ctx, kind: &ShareDevice, name: &str, seed: u32) -> Step<Spec> {
    let dir = fixtures::folder(ctx.scratch(), &fixtures::unique(name), &share_files(seed))?;
    Ok(Spec::Share(SharedFolder {
        kind: kind.kind,
        name: name.into(),
        host_path: dir,
        read_only: true,
        allowed_files: Vec::new(),
    }))
}

async fn remove_names_its_kind(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let mut usable = Vec::new();
    let mut refusals = Vec::new();
    for kind in [&VIRTIO_FS, &PLAN9, &VSMB] {
        let add = claims(kind, &*vm, Operation::Add)?;
        if add && claims(kind, &*vm, Operation::Remove)? {
            usable.push(kind);
        } else if !add {
            refuse_add(kind, &*vm, &kind.fixture(&ctx, 1)?, "an add").await?;
            refusals.push(Capability::Pair(kind.resource(), Operation::Add));
        }
    }
    let Some(manager) = vm.shared_folders() else {
        return Err(crate::step::unclaimed(&refusals));
    };
    let Some(&one) = usable.first() else {
        return Err(crate::step::unclaimed(&refusals));
    };
    let name = "kinded";
    let first = named(&ctx, one, name, 3)?;
    add_claimed(one, &*vm, &first, "adding before start").await?;
    for other in [&VIRTIO_FS, &PLAN9, &VSMB] {
        if other.kind == one.kind {
            continue;
        }
        let what = format!(
            "removing {} \"{name}\" while only a {} of that name exists",
            other.noun(),
            one.noun()
        );
        let result = manager.remove_share(other.kind, name).await;
        let want = if vm.supported(other.resource(), Operation::Remove) {
            crate::step::Want::NotFound(other.resource())
        } else {
            crate::step::Want::NotSupported(other.resource(), Operation::Remove)
        };
        crate::step::expect_err(&what, result, want)?;
    }
    crate::step::expect_err(
        &format!(
            "adding {} \"{name}\" again after removes of the other kinds' \"{name}\"",
            one.noun()
        ),
        one.add(&*vm, &first).await.unwrap_or(Ok(())),
        crate::step::Want::AlreadyExists(one.resource()),
    )?;
    if let Some(&two) = usable.get(1) {
        let second = named(&ctx, two, name, 4)?;
        add_claimed(
            two,
            &*vm,
            &second,
            "adding a same-named share of another kind",
        )
        .await?;
        let removal =
            super::device::remove_claimed(one, &*vm, &first, "removing the first kind's share")
                .await?;
        super::support::complete(&ctx, &removal, "removing one of two same-named shares").await?;
        crate::step::expect_err(
            &format!(
                "adding {} \"{name}\" again after the {} of that name was removed",
                two.noun(),
                one.noun()
            ),
            two.add(&*vm, &second).await.unwrap_or(Ok(())),
            crate::step::Want::AlreadyExists(two.resource()),
        )?;
        let removal =
            super::device::remove_claimed(two, &*vm, &second, "removing the second kind's share")
                .await?;
        super::support::complete(
            &ctx,
            &removal,
            "removing the other of two same-named shares",
        )
        .await?;
    } else {
        let removal =
            super::device::remove_claimed(one, &*vm, &first, "removing it by its own kind").await?;
        super::support::complete(&ctx, &removal, "removing it by its own kind").await?;
    }
    Ok(())
}

super::device_checks!(Shares, KINDS;
    shares_cold_plug_visible_after_start,
    shares_hot_add_visible_in_guest,
    shares_cold_and_hot_plug_agree,
    shares_same_name_twice_already_exists,
    shares_changes_while_paused_invalid_state,
    shares_changes_after_stop_invalid_state,
    shares_hot_remove_leaves_guest,
    shares_cold_remove_before_start,
    shares_remove_then_readd_same_name,
    shares_double_remove_not_found,
    shares_remove_unknown_not_found,
    shares_name_reserved_until_removal_completes,
);

super::boot_check!(Shares, shares_boot_config_share_visible, KINDS);

super::kind_check!(
    Shares,
    shares_remove_while_releasing_not_found,
    "removing a share again while its removal is pending gives NotFound, and the first removal still completes",
    KINDS,
    super::unplug::remove_while_releasing
);

super::check!(
    Shares,
    shares_read_only_refuses_guest_writes,
    "a read-only share is read-only in the guest; guest writes fail and do not reach the host folder",
    read_only_refuses_writes
);

super::check!(
    Shares,
    shares_guest_writes_reach_host_folder,
    "a file the guest writes to a writable share is in the host folder with the same contents",
    writes_reach_host
);

super::check!(
    Shares,
    shares_allowed_files_limit_guest_view,
    "a share with allowed files shows the guest only those files",
    allowed_files_limit_view
);

super::check!(
    Shares,
    shares_same_name_across_kinds_coexist,
    "names are unique per kind: shares of different kinds may have the same name",
    same_name_other_kinds
);

super::check!(
    Shares,
    shares_remove_names_its_kind,
    "remove_share removes the share of the kind it names: another kind's remove of that name gives NotFound and leaves it, and removing one of two same-named shares leaves the other",
    remove_names_its_kind
);
