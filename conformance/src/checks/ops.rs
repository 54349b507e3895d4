//! Every manager call there is, made once, for the checks that expect each
//! of them to be refused the same way in some state.

use uvm_api::{Operation, ProcessorLimits, Resource, ShareKind, Uvm, VpmemController};

use super::device::{DeviceKind, Spec};
use crate::ctx::Ctx;
use crate::step::Step;

/// One manager call and what it returned.
pub(crate) struct Call {
    /// The call, in words.
    pub(crate) what: String,
    /// The capability it belongs to.
    pub(crate) resource: Resource,
    /// The operation it is.
    pub(crate) operation: Operation,
    /// What it returned; `None` if the VM has no manager to call.
    pub(crate) result: Option<uvm_api::Result<()>>,
}

fn call<T>(
    what: impl Into<String>,
    resource: Resource,
    operation: Operation,
    result: Option<uvm_api::Result<T>>,
) -> Call {
    Call {
        what: what.into(),
        resource,
        operation,
        result: result.map(|r| r.map(|_| ())),
    }
}

/// The vsock port the calls use.
pub(crate) const PORT: u32 = 5123;

/// Makes every manager call once against `vm`, with well-formed arguments.
pub(crate) async fn every_call(ctx: &Ctx, vm: &dyn Uvm) -> Step<Vec<Call>> {
    use Operation::{Add, Remove, Update};
    let mut calls = Vec::new();
    let disk = super::scsi::ScsiKind.fixture(ctx, 1)?;
    let pmem = super::vpmem::VpmemKind.fixture(ctx, 1)?;
    let nic = super::network::NicKind.fixture(ctx, 1)?;
    let pci = super::pci::PciKind.fixture(ctx, 1)?;

    if let Some(scsi) = vm.scsi() {
        calls.push(call(
            "scsi add_controller(0)",
            Resource::Scsi,
            Add,
            Some(scsi.add_controller(0).await),
        ));
        if let Spec::Scsi(d) = disk {
            calls.push(call(
                "scsi add_disk(0:1)",
                Resource::Scsi,
                Add,
                Some(scsi.add_disk(d).await),
            ));
        }
        calls.push(call(
            "scsi remove_disk(0:1)",
            Resource::Scsi,
            Remove,
            Some(scsi.remove_disk(0, 1).await),
        ));
        calls.push(call(
            "scsi remove_controller(0)",
            Resource::Scsi,
            Remove,
            Some(scsi.remove_controller(0).await),
        ));
    } else {
        calls.push(call::<()>("scsi", Resource::Scsi, Add, None));
        calls.push(call::<()>("scsi", Resource::Scsi, Remove, None));
    }
    if let Some(vpmem) = vm.vpmem() {
        let controller = VpmemController {
            max_devices: 4,
            max_size_bytes: 64 << 20,
        };
        calls.push(call(
            "vpmem add_controller",
            Resource::VPMem,
            Add,
            Some(vpmem.add_controller(controller).await),
        ));
        if let Spec::Vpmem(d) = pmem {
            calls.push(call(
                "vpmem add_device(1)",
                Resource::VPMem,
                Add,
                Some(vpmem.add_device(d).await),
            ));
        }
        calls.push(call(
            "vpmem remove_device(1)",
            Resource::VPMem,
            Remove,
            Some(vpmem.remove_device(1).await),
        ));
    } else {
        calls.push(call::<()>("vpmem", Resource::VPMem, Add, None));
        calls.push(call::<()>("vpmem", Resource::VPMem, Remove, None));
    }
    if let Some(network) = vm.network() {
        if let Spec::Nic(n) = nic {
            calls.push(call(
                "network add_nic(nic1)",
                Resource::Network,
                Add,
                Some(network.add_nic(n).await),
            ));
        }
        calls.push(call(
            "network remove_nic(nic1)",
            Resource::Network,
            Remove,
            Some(network.remove_nic("nic1").await),
        ));
    } else {
        calls.push(call::<()>("network", Resource::Network, Add, None));
        calls.push(call::<()>("network", Resource::Network, Remove, None));
    }
    for kind in [ShareKind::VirtioFs, ShareKind::Plan9, ShareKind::Vsmb] {
        let r = kind.resource();
        let device = match kind {
            ShareKind::VirtioFs => &super::shares::VIRTIO_FS,
            ShareKind::Plan9 => &super::shares::PLAN9,
            ShareKind::Vsmb => &super::shares::VSMB,
        };
        let spec = device.fixture(ctx, 1)?;
        match (vm.shared_folders(), spec) {
            (Some(shares), Spec::Share(s)) => {
                let name = s.name.clone();
                calls.push(call(
                    format!("shares add_share({r} {name})"),
                    r,
                    Add,
                    Some(shares.add_share(s).await),
                ));
                calls.push(call(
                    format!("shares remove_share({r} {name})"),
                    r,
                    Remove,
                    Some(shares.remove_share(kind, &name).await),
                ));
            }
            _ => {
                calls.push(call::<()>("shares", r, Add, None));
                calls.push(call::<()>("shares", r, Remove, None));
            }
        }
    }
    if let Some(manager) = vm.pci() {
        if let Spec::Pci(d) = pci {
            calls.push(call(
                "pci add_device(pci1)",
                Resource::Pci,
                Add,
                Some(manager.add_device(d).await),
            ));
        }
        calls.push(call(
            "pci remove_device(pci1)",
            Resource::Pci,
            Remove,
            Some(manager.remove_device("pci1").await),
        ));
    } else {
        calls.push(call::<()>("pci", Resource::Pci, Add, None));
        calls.push(call::<()>("pci", Resource::Pci, Remove, None));
    }
    if let Some(sockets) = vm.vm_socket() {
        calls.push(call(
            format!("vm_socket listen({PORT})"),
            Resource::VmSocket,
            Add,
            Some(sockets.listen(PORT).await),
        ));
        calls.push(call(
            format!("vm_socket connect({})", PORT + 1),
            Resource::VmSocket,
            Add,
            Some(sockets.connect(PORT + 1).await),
        ));
    } else {
        calls.push(call::<()>("vm_socket", Resource::VmSocket, Add, None));
    }
    let memory = ctx.template().memory_mib;
    calls.push(call(
        format!("memory update_memory({memory})"),
        Resource::Memory,
        Update,
        match vm.memory() {
            Some(m) => Some(m.update_memory(memory).await),
            None => None,
        },
    ));
    let limits = ProcessorLimits {
        weight: Some(100),
        ..Default::default()
    };
    calls.push(call(
        "processor update_limits(weight 100)",
        Resource::Processor,
        Update,
        match vm.processor() {
            Some(p) => Some(p.update_limits(limits).await),
            None => None,
        },
    ));
    calls.push(call(
        "cpu_group set_cpu_group(uvm-conformance)",
        Resource::CpuGroup,
        Update,
        match vm.cpu_group() {
            Some(c) => Some(c.set_cpu_group("uvm-conformance").await),
            None => None,
        },
    ));
    Ok(calls)
}
