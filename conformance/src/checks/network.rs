//! Network adapters, checked through the guest's interfaces (found by MAC).

use async_trait::async_trait;
use uvm_api::{GuestProbe, Nic, Operation, Resource, State, Uvm, UvmConfig};

use super::device::{
    DeviceKind, Seen, Spec, add_claimed, claims, probe_failed, wait_seen, wrong_spec,
};
use super::plug::{Kinds, maybe_view, refuse_add, unclaimed_op};
use super::support::{Before, create, created_and_running, reach};
use crate::ctx::Ctx;
use crate::fixtures::mac;
use crate::step::{Step, Want, ensure, expect_err};

/// NICs `nic<n>` on endpoint `uvmct<n>` with a MAC derived from `n`.
pub(crate) struct NicKind;

/// The NIC kind, for the generic checks.
pub(crate) static KINDS: Kinds = &[&NicKind];

fn nic(spec: &Spec) -> Option<&Nic> {
    match spec {
        Spec::Nic(n) => Some(n),
        _ => None,
    }
}

#[async_trait]
impl DeviceKind for NicKind {
    fn resource(&self) -> Resource {
        Resource::Network
    }

    fn noun(&self) -> &'static str {
        "NIC"
    }

    fn fixture(&self, _ctx: &Ctx, n: u32) -> Step<Spec> {
        Ok(Spec::Nic(Nic {
            id: format!("nic{n}"),
            endpoint: format!("uvmct{n}"),
            mac: mac(n)?,
        }))
    }

    fn variant(&self, _ctx: &Ctx, n: u32) -> Step<Spec> {
        Ok(Spec::Nic(Nic {
            id: format!("nic{n}"),
            endpoint: format!("uvmct{}", n + 500),
            mac: mac(n + 5000)?,
        }))
    }

    fn id(&self, spec: &Spec) -> String {
        nic(spec).map(|n| n.id.clone()).unwrap_or_default()
    }

    fn for_another_vm(&self, spec: &Spec) -> Spec {
        match nic(spec) {
            // A tap serves one VM at a time; the guest sees the same NIC.
            Some(n) => Spec::Nic(Nic {
                endpoint: format!("{}b", n.endpoint),
                ..n.clone()
            }),
            None => spec.clone(),
        }
    }

    fn boot(&self, config: &mut UvmConfig, spec: &Spec) -> bool {
        match nic(spec) {
            Some(n) => {
                config.devices.nics.push(n.clone());
                true
            }
            None => false,
        }
    }

    async fn prepare(&self, _vm: &dyn Uvm) -> Step {
        Ok(())
    }

    async fn add(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<()>> {
        let n = nic(spec)?.clone();
        Some(vm.network()?.add_nic(n).await)
    }

    async fn remove(&self, vm: &dyn Uvm, spec: &Spec) -> Option<uvm_api::Result<uvm_api::Removal>> {
        let n = nic(spec)?;
        Some(vm.network()?.remove_nic(&n.id).await)
    }

    fn has_manager(&self, vm: &dyn Uvm) -> bool {
        vm.network().is_some()
    }

    async fn seen(&self, probe: &dyn GuestProbe, spec: &Spec) -> Step<Option<Seen>> {
        let n = nic(spec).ok_or_else(|| wrong_spec(self, spec))?;
        let nics = probe
            .network_interfaces()
            .await
            .map_err(|e| probe_failed("network_interfaces", e))?;
        Ok(nics
            .into_iter()
            .find(|g| g.mac == n.mac)
            .map(|g| Seen::Nic {
                mac: g.mac,
                link_up: g.link_up,
            }))
    }

    fn expected(&self, spec: &Spec) -> Step<Seen> {
        let n = nic(spec).ok_or_else(|| wrong_spec(self, spec))?;
        Ok(Seen::Nic {
            mac: n.mac,
            link_up: true,
        })
    }
}

async fn duplicate_mac(ctx: Ctx) -> Step {
    created_and_running(|state| duplicate_mac_in(&ctx, state)).await
}

async fn duplicate_mac_in(ctx: &Ctx, state: State) -> Step {
    let vm = create(ctx).await?;
    reach(&*vm, state).await?;
    let first = NicKind.fixture(ctx, 1)?;
    let mut second = NicKind.fixture(ctx, 2)?;
    if let (Spec::Nic(a), Spec::Nic(b)) = (&first, &mut second) {
        b.mac = a.mac;
    }
    if !claims(&NicKind, &*vm, Operation::Add)? {
        refuse_add(&NicKind, &*vm, &second, "an add").await?;
        return Err(unclaimed_op(&NicKind, Operation::Add));
    }
    add_claimed(&NicKind, &*vm, &first, &format!("adding nic1 ({state})")).await?;
    let before = Before::take(&*vm).await?;
    let what = format!("adding nic2 with the MAC of nic1 ({state})");
    expect_err(
        &what,
        NicKind.add(&*vm, &second).await.unwrap_or(Ok(())),
        Want::AlreadyExists(Resource::Network),
    )?;
    before.unchanged(&*vm, &what).await
}

async fn several_nics(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let specs = (1..=4)
        .map(|n| NicKind.fixture(&ctx, n))
        .collect::<Step<Vec<_>>>()?;
    let claimed = claims(&NicKind, &*vm, Operation::Add)?;
    if claimed {
        for spec in &specs[..2] {
            add_claimed(&NicKind, &*vm, spec, "adding before start").await?;
        }
    }
    vm.start()
        .await
        .map_err(|e| crate::step::fail(format!("start: {}", crate::step::describe(&e))))?;
    if !claimed {
        refuse_add(&NicKind, &*vm, &specs[2], "a hot add").await?;
        return Err(unclaimed_op(&NicKind, Operation::Add));
    }
    for spec in &specs[2..] {
        add_claimed(&NicKind, &*vm, spec, "adding while running").await?;
    }
    let Some(probe) = maybe_view(&NicKind, &*vm) else {
        return Ok(());
    };
    for spec in &specs {
        wait_seen(
            &ctx,
            &NicKind,
            probe,
            spec,
            "two cold plugs and two hot adds",
        )
        .await?;
    }
    let names: Vec<String> = probe
        .network_interfaces()
        .await
        .map_err(|e| probe_failed("network_interfaces", e))?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    ensure!(
        unique.len() == names.len(),
        "the guest gives two interfaces the same name: {names:?}"
    );
    Ok(())
}

async fn mac_follows_nic(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let first = NicKind.fixture(&ctx, 1)?;
    super::unplug::removable(&NicKind, &*vm, &first).await?;
    add_claimed(&NicKind, &*vm, &first, "adding nic1 before start").await?;
    let removal = super::device::remove_claimed(&NicKind, &*vm, &first, "removing nic1").await?;
    super::support::complete(&ctx, &removal, "removing nic1 before start").await?;
    // nic1 again, under a new MAC; nic2 under the MAC nic1 had.
    let again = NicKind.variant(&ctx, 1)?;
    add_claimed(
        &NicKind,
        &*vm,
        &again,
        "re-adding nic1 with a new MAC after its removal completed",
    )
    .await?;
    let (Spec::Nic(old), Spec::Nic(new)) = (&first, &again) else {
        return Err(super::device::wrong_spec(&NicKind, &first));
    };
    let mut reuse = NicKind.fixture(&ctx, 2)?;
    let mut clash = NicKind.fixture(&ctx, 3)?;
    if let (Spec::Nic(r), Spec::Nic(c)) = (&mut reuse, &mut clash) {
        r.mac = old.mac;
        c.mac = new.mac;
    }
    add_claimed(
        &NicKind,
        &*vm,
        &reuse,
        &format!(
            "adding nic2 with MAC {}, which only the removed nic1 had",
            old.mac
        ),
    )
    .await?;
    let before = Before::take(&*vm).await?;
    let what = format!(
        "adding nic3 with MAC {}, which the re-added nic1 has",
        new.mac
    );
    expect_err(
        &what,
        NicKind.add(&*vm, &clash).await.unwrap_or(Ok(())),
        Want::AlreadyExists(Resource::Network),
    )?;
    before.unchanged(&*vm, &what).await
}

async fn long_ids(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let id = |last: char| {
        let mut id = "nic-".repeat(16);
        id.truncate(uvm_api::validate::MAX_IDENTIFIER_LEN - 1);
        id.push(last);
        id
    };
    let mut first = NicKind.fixture(&ctx, 1)?;
    let mut second = NicKind.fixture(&ctx, 2)?;
    if let (Spec::Nic(a), Spec::Nic(b)) = (&mut first, &mut second) {
        a.id = id('a');
        b.id = id('b');
    }
    super::unplug::removable(&NicKind, &*vm, &first).await?;
    add_claimed(
        &NicKind,
        &*vm,
        &first,
        "adding a NIC with a 64-character id",
    )
    .await?;
    add_claimed(
        &NicKind,
        &*vm,
        &second,
        "adding a NIC whose 64-character id differs from the first's in the last character only",
    )
    .await?;
    let removal = super::device::remove_claimed(
        &NicKind,
        &*vm,
        &first,
        "removing the first of the two long ids",
    )
    .await?;
    // Not waited for: whether it completes is another check's business.
    drop(removal);
    let what = "adding the second long id again, while the first is being removed";
    expect_err(
        what,
        NicKind.add(&*vm, &second).await.unwrap_or(Ok(())),
        Want::AlreadyExists(Resource::Network),
    )?;
    Ok(())
}

super::device_checks!(Network, KINDS;
    network_cold_plug_visible_after_start,
    network_hot_add_visible_in_guest,
    network_cold_and_hot_plug_agree,
    network_same_id_twice_already_exists,
    network_changes_while_paused_invalid_state,
    network_changes_after_stop_invalid_state,
    network_hot_remove_leaves_guest,
    network_cold_remove_before_start,
    network_remove_then_readd_same_id,
    network_double_remove_not_found,
    network_remove_unknown_not_found,
    network_id_reserved_until_removal_completes,
);

super::boot_check!(Network, network_boot_config_nic_visible, KINDS);

super::kind_check!(
    Network,
    network_remove_while_releasing_not_found,
    "removing a NIC again while its removal is pending gives NotFound, and the first removal still completes",
    KINDS,
    super::unplug::remove_while_releasing
);

super::check!(
    Network,
    network_same_mac_twice_already_exists,
    "a second NIC with a MAC in use gives AlreadyExists and changes nothing",
    duplicate_mac
);

super::check!(
    Network,
    network_several_nics_distinct_in_guest,
    "two cold-plugged and two hot-added NICs are all in the guest, each with its MAC, under distinct names",
    several_nics
);

super::check!(
    Network,
    network_mac_follows_nic_through_removal,
    "a MAC is in use exactly while its NIC is: a completed removal frees it, and a NIC re-added under its id with a new MAC holds the new one",
    mac_follows_nic
);

super::check!(
    Network,
    network_long_ids_are_distinct,
    "NIC ids are whole identifiers of up to 64 characters: two that differ in the last character only are two NICs",
    long_ids
);
