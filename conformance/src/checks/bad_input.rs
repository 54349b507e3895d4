//! Malformed input is refused the same way by every backend (the checks of
//! `uvm_api::validate`), and a refused call changes nothing: the id it named
//! is still free afterwards.

use uvm_api::{
    BootDevices, DiskFormat, Error, GuestOs, ImageFormat, Nic, ScsiDisk, ShareKind, SharedFolder,
    State, UvmConfig, VpmemController, VpmemDevice,
};

use super::device::{DeviceKind, Spec, add_claimed, claims};
use super::network::NicKind;
use super::pci::PciKind;
use super::plug::{refuse_add, unclaimed_op};
use super::scsi::ScsiKind;
use super::shares::VIRTIO_FS;
use super::support::{Before, Vm, created_and_running, in_state};
use super::vpmem::VpmemKind;
use crate::ctx::Ctx;
use crate::step::{Step, Want, bail, ensure, expect_any_err, expect_err};

/// Adding `kind`'s device 1 broken by `spoil` gives one of `wants` (or
/// `NotSupported` if add is unclaimed), before start and while running; the
/// refusal changes nothing, so the well-formed device 1 can be added after.
async fn bad_add(
    ctx: &Ctx,
    kind: &'static dyn DeviceKind,
    flaw: &str,
    spoil: fn(&mut Spec),
    wants: &[Want],
) -> Step {
    created_and_running(|state| bad_add_in(ctx, kind, flaw, spoil, wants, state)).await
}

async fn bad_add_in(
    ctx: &Ctx,
    kind: &'static dyn DeviceKind,
    flaw: &str,
    spoil: fn(&mut Spec),
    wants: &[Want],
    state: State,
) -> Step {
    let vm = in_state(ctx, state).await?;
    let mut bad = kind.fixture(ctx, 1)?;
    spoil(&mut bad);
    if !claims(kind, &*vm, uvm_api::Operation::Add)? {
        refuse_add(kind, &*vm, &bad, &format!("an add with {flaw}")).await?;
        return Err(unclaimed_op(kind, uvm_api::Operation::Add));
    }
    kind.prepare(&*vm).await?;
    let before = Before::take(&*vm).await?;
    let what = format!(
        "adding {} {} with {flaw} while {state}",
        kind.noun(),
        kind.id(&bad)
    );
    expect_any_err(&what, kind.add(&*vm, &bad).await.unwrap_or(Ok(())), wants)?;
    before.unchanged(&*vm, &what).await?;
    // Nothing changed: the id the refused call named is still free.
    let good = kind.fixture(ctx, 1)?;
    if kind.id(&good) == kind.id(&bad) {
        let what =
            format!("adding a well-formed device under the id the refused add named ({state})");
        add_claimed(kind, &*vm, &good, &what).await?;
    }
    Ok(())
}

macro_rules! bad_add_check {
    ($fn_name:ident, $kind:expr, $flaw:literal, $spoil:expr, $wants:expr) => {
        async fn $fn_name(ctx: Ctx) -> Step {
            bad_add(&ctx, $kind, $flaw, $spoil, $wants).await
        }
    };
}

const ARG: &[Want] = &[Want::InvalidArgument];

bad_add_check!(
    scsi_relative_path,
    &ScsiKind,
    "a relative image path",
    |s| {
        if let Spec::Scsi(d) = s {
            d.path = "disk.img".into();
        }
    },
    ARG
);
bad_add_check!(
    scsi_missing_image,
    &ScsiKind,
    "an image that does not exist",
    |s| {
        if let Spec::Scsi(d) = s {
            d.path = d.path.with_extension("missing");
        }
    },
    ARG
);
bad_add_check!(
    scsi_lun_out_of_range,
    &ScsiKind,
    "LUN 64 (LUNs are 0..64)",
    |s| {
        if let Spec::Scsi(d) = s {
            d.lun = uvm_api::config::MAX_LUNS_PER_CONTROLLER;
        }
    },
    &[Want::InvalidArgument, Want::LimitReached]
);
bad_add_check!(
    vpmem_relative_path,
    &VpmemKind,
    "a relative image path",
    |s| {
        if let Spec::Vpmem(d) = s {
            d.path = "layer.img".into();
        }
    },
    ARG
);
bad_add_check!(
    vpmem_missing_image,
    &VpmemKind,
    "an image that does not exist",
    |s| {
        if let Spec::Vpmem(d) = s {
            d.path = d.path.with_extension("missing");
        }
    },
    ARG
);
bad_add_check!(
    nic_malformed_id,
    &NicKind,
    "an id with a space",
    |s| {
        if let Spec::Nic(n) = s {
            n.id = "nic 1".into();
        }
    },
    ARG
);
bad_add_check!(
    nic_empty_endpoint,
    &NicKind,
    "an empty endpoint",
    |s| {
        if let Spec::Nic(n) = s {
            n.endpoint.clear();
        }
    },
    ARG
);
bad_add_check!(
    share_relative_path,
    &VIRTIO_FS,
    "a relative host path",
    |s| {
        if let Spec::Share(f) = s {
            f.host_path = "shared".into();
        }
    },
    ARG
);
bad_add_check!(
    share_file_not_folder,
    &VIRTIO_FS,
    "a host path that is a file",
    |s| {
        if let Spec::Share(f) = s {
            f.host_path = f.host_path.join("file-0.bin");
        }
    },
    ARG
);
bad_add_check!(
    share_escaping_allowed_file,
    &VIRTIO_FS,
    "an allowed file outside the folder",
    |s| {
        if let Spec::Share(f) = s {
            f.allowed_files = vec!["../../etc/passwd".into()];
        }
    },
    ARG
);
bad_add_check!(
    share_malformed_name,
    &VIRTIO_FS,
    "a name with a slash",
    |s| {
        if let Spec::Share(f) = s {
            f.name = "a/b".into();
        }
    },
    ARG
);
bad_add_check!(
    pci_malformed_id,
    &PciKind,
    "an empty id",
    |s| {
        if let Spec::Pci(d) = s {
            d.id.clear();
        }
    },
    ARG
);
bad_add_check!(
    pci_missing_device,
    &PciKind,
    "a host path that does not exist",
    |s| {
        if let Spec::Pci(d) = s {
            d.host_path = "/definitely/not/a/pci/device".into();
        }
    },
    ARG
);

async fn invalid_config(ctx: Ctx) -> Step {
    let mut broken = Vec::new();
    let mut c = ctx.config();
    c.vcpus = 0;
    broken.push(("vcpus 0", c));
    let mut c = ctx.config();
    c.memory_mib = 1;
    broken.push(("1 MiB of memory", c));
    let mut c = ctx.config();
    c.id = "has space".into();
    broken.push(("an id with a space", c));
    let mut c = ctx.config();
    c.cmdline = "quiet".into();
    c.kernel = None;
    broken.push(("a command line without a kernel", c));
    let kernel = std::path::PathBuf::from("/uvm-conformance/kernel");
    let mut c = ctx.config();
    c.kernel = Some(kernel.clone());
    c.cmdline = "x".repeat(uvm_api::config::MAX_CMDLINE_LEN + 1);
    broken.push(("a command line one byte over the limit", c));
    let mut c = ctx.config();
    c.kernel = Some(kernel);
    c.cmdline = "console=ttyS0\0quiet".into();
    broken.push(("a command line holding a NUL", c));
    for (flaw, config) in broken {
        let result = ctx.backend().create(config).await;
        expect_err(
            &format!("creating a VM from a config with {flaw}"),
            result.map(|_| ()),
            Want::InvalidConfig,
        )?;
    }
    Ok(())
}

/// The fields an `InvalidConfig` names, in order.
fn problem_fields(e: &Error) -> Vec<String> {
    match e {
        Error::InvalidConfig { problems } => problems.iter().map(|p| p.field.clone()).collect(),
        _ => Vec::new(),
    }
}

/// A config with three bad fields is refused with all three named.
async fn every_problem_listed(ctx: Ctx) -> Step {
    let mut config = ctx.config();
    config.id = String::new();
    config.vcpus = 0;
    config.memory_mib = 0;
    let e = expect_err(
        "creating a VM with an empty id, 0 vCPUs and 0 MiB of memory",
        ctx.backend().create(config).await.map(|_| ()),
        Want::InvalidConfig,
    )?;
    let mut fields = problem_fields(&e);
    fields.sort();
    ensure!(
        fields == ["id", "memory_mib", "vcpus"],
        "InvalidConfig for an empty id, 0 vCPUs and 0 MiB names {fields:?}; it must list every bad field once, by its path: id, memory_mib, vcpus"
    );
    Ok(())
}

/// One malformed boot-device config per rule of `UvmConfig::validate`, each
/// with the field its problem must name. The paths need not exist: they are
/// refused before anything is opened.
fn broken_boot_devices(ctx: &Ctx) -> Step<Vec<(&'static str, &'static str, UvmConfig)>> {
    let disk = |controller: u8, lun: u8| ScsiDisk {
        controller,
        lun,
        path: "/uvm-conformance/disk.img".into(),
        format: DiskFormat::Raw,
        read_only: false,
    };
    let pmem = |id: u32| VpmemDevice {
        id,
        path: "/uvm-conformance/layer.img".into(),
        read_only: true,
        format: ImageFormat::Raw,
    };
    let controller = VpmemController {
        max_devices: 4,
        max_size_bytes: 64 << 20,
    };
    let nic = |id: &str, n: u32| -> Step<Nic> {
        Ok(Nic {
            id: id.into(),
            endpoint: format!("tap{n}"),
            mac: crate::fixtures::mac(n)?,
        })
    };
    let share = |name: &str| SharedFolder {
        kind: ShareKind::VirtioFs,
        name: name.into(),
        host_path: "/uvm-conformance/share".into(),
        read_only: true,
        allowed_files: Vec::new(),
    };
    let mut out = Vec::new();
    let mut push = |flaw, field, edit: &dyn Fn(&mut BootDevices)| {
        let mut c = ctx.config();
        edit(&mut c.devices);
        out.push((flaw, field, c));
    };
    push("5 SCSI controllers", "devices.scsi_controllers", &|d| {
        d.scsi_controllers = uvm_api::config::MAX_SCSI_CONTROLLERS + 1;
    });
    push(
        "a disk on a controller not configured",
        "devices.scsi_disks[0].controller",
        &|d| {
            d.scsi_controllers = 1;
            d.scsi_disks = vec![disk(1, 0)];
        },
    );
    push("a disk at LUN 64", "devices.scsi_disks[0].lun", &|d| {
        d.scsi_controllers = 1;
        d.scsi_disks = vec![disk(0, uvm_api::config::MAX_LUNS_PER_CONTROLLER)];
    });
    push(
        "two disks at one address",
        "devices.scsi_disks[1].lun",
        &|d| {
            d.scsi_controllers = 1;
            d.scsi_disks = vec![disk(0, 1), disk(0, 1)];
        },
    );
    push(
        "a disk with a relative path",
        "devices.scsi_disks[0].path",
        &|d| {
            d.scsi_controllers = 1;
            let mut x = disk(0, 1);
            x.path = "disk.img".into();
            d.scsi_disks = vec![x];
        },
    );
    push(
        "a VPMem device without a controller",
        "devices.vpmem_devices[0]",
        &|d| d.vpmem_devices = vec![pmem(0)],
    );
    push(
        "a VPMem device beyond max_devices",
        "devices.vpmem_devices[0].id",
        &|d| {
            d.vpmem = Some(controller);
            d.vpmem_devices = vec![pmem(controller.max_devices)];
        },
    );
    push(
        "two VPMem devices in one slot",
        "devices.vpmem_devices[1].id",
        &|d| {
            d.vpmem = Some(controller);
            d.vpmem_devices = vec![pmem(1), pmem(1)];
        },
    );
    push("a VPMem controller of 0 devices", "devices.vpmem", &|d| {
        d.vpmem = Some(VpmemController {
            max_devices: 0,
            ..controller
        });
    });
    push("a VPMem controller of 0 bytes", "devices.vpmem", &|d| {
        d.vpmem = Some(VpmemController {
            max_size_bytes: 0,
            ..controller
        });
    });
    let (a, b, spaced) = (nic("nic1", 1)?, nic("nic2", 2)?, nic("bad nic", 3)?);
    push("a NIC id with a space", "devices.nics[0].id", &|d| {
        d.nics = vec![spaced.clone()];
    });
    push("two NICs of one id", "devices.nics[1].id", &|d| {
        d.nics = vec![
            a.clone(),
            Nic {
                id: a.id.clone(),
                ..b.clone()
            },
        ];
    });
    push("two NICs of one MAC", "devices.nics[1].mac", &|d| {
        d.nics = vec![
            a.clone(),
            Nic {
                mac: a.mac,
                ..b.clone()
            },
        ];
    });
    push(
        "a share name with a slash",
        "devices.shares[0].name",
        &|d| {
            d.shares = vec![share("a/b")];
        },
    );
    push("two shares of one name", "devices.shares[1].name", &|d| {
        d.shares = vec![share("data"), share("data")];
    });
    push(
        "a share with a relative path",
        "devices.shares[0].host_path",
        &|d| {
            let mut s = share("data");
            s.host_path = "share".into();
            d.shares = vec![s];
        },
    );
    push(
        "an allowed file escaping the share",
        "devices.shares[0].allowed_files",
        &|d| {
            let mut s = share("data");
            s.allowed_files = vec!["../../etc/passwd".into()];
            d.shares = vec![s];
        },
    );
    Ok(out)
}

/// Each malformed boot-device config is refused with `InvalidConfig` naming
/// the bad field.
async fn invalid_boot_devices(ctx: Ctx) -> Step {
    for (flaw, field, config) in broken_boot_devices(&ctx)? {
        let what = format!("creating a VM whose boot devices have {flaw}");
        let e = expect_err(
            &what,
            ctx.backend().create(config).await.map(|_| ()),
            Want::InvalidConfig,
        )?;
        let fields = problem_fields(&e);
        ensure!(
            fields.iter().any(|f| f == field),
            "{what}: InvalidConfig names {fields:?}; expected it to name {field}"
        );
    }
    Ok(())
}

async fn guest_os(ctx: Ctx) -> Step {
    let backend = ctx.backend().clone();
    for os in [GuestOs::Linux, GuestOs::Windows] {
        let mut config = ctx.config();
        config.guest_os = os;
        if os == GuestOs::Windows {
            config.kernel = None;
            config.initrd = None;
            config.cmdline.clear();
        }
        let result = backend.create(config).await;
        if backend.supports_guest_os(os) {
            if let Err(Error::UnsupportedGuestOs { .. }) = &result {
                bail!(
                    "creating a {os} VM gave UnsupportedGuestOs, but supports_guest_os({os}) is true"
                );
            }
            if let Ok(vm) = result {
                drop(Vm::new(vm));
            }
            continue;
        }
        match result {
            Err(Error::UnsupportedGuestOs {
                os: got,
                backend: name,
            }) => {
                if got != os || name != backend.name() {
                    bail!(
                        "creating a {os} VM gave UnsupportedGuestOs {{ os: {got}, backend: {name} }}; expected os {os}, backend {}",
                        backend.name()
                    );
                }
            }
            other => {
                expect_err(
                    &format!("creating a {os} VM (supports_guest_os({os}) is false)"),
                    other.map(|_| ()),
                    Want::UnsupportedGuestOs,
                )?;
            }
        }
    }
    Ok(())
}

super::check!(
    BadInput,
    bad_input_invalid_config_refused,
    "create refuses a config that fails validation with InvalidConfig",
    invalid_config
);

super::check!(
    BadInput,
    bad_input_invalid_config_lists_every_problem,
    "InvalidConfig lists every bad field at once, each by its path in the config",
    every_problem_listed
);

super::check!(
    BadInput,
    bad_input_invalid_boot_devices_refused,
    "create refuses malformed boot devices (controllers, LUNs, slots, VPMem limits, NIC ids and MACs, share names and paths) with InvalidConfig naming the field",
    invalid_boot_devices
);

super::check!(
    BadInput,
    bad_input_unsupported_guest_os_refused,
    "create refuses a guest OS the backend does not run with UnsupportedGuestOs naming it and the backend",
    guest_os
);

super::check!(
    BadInput,
    bad_input_scsi_relative_path,
    "a SCSI disk with a relative path gives InvalidArgument and leaves its LUN free",
    scsi_relative_path
);

super::check!(
    BadInput,
    bad_input_scsi_missing_image,
    "a SCSI disk whose image does not exist gives InvalidArgument and leaves its LUN free",
    scsi_missing_image
);

super::check!(
    BadInput,
    bad_input_scsi_lun_out_of_range,
    "a SCSI disk at LUN 64 is refused (InvalidArgument or LimitReached)",
    scsi_lun_out_of_range
);

super::check!(
    BadInput,
    bad_input_vpmem_relative_path,
    "a VPMem device with a relative path gives InvalidArgument and leaves its slot free",
    vpmem_relative_path
);

super::check!(
    BadInput,
    bad_input_vpmem_missing_image,
    "a VPMem device whose image does not exist gives InvalidArgument and leaves its slot free",
    vpmem_missing_image
);

super::check!(
    BadInput,
    bad_input_nic_malformed_id,
    "a NIC id with a space gives InvalidArgument",
    nic_malformed_id
);

super::check!(
    BadInput,
    bad_input_nic_empty_endpoint,
    "a NIC with an empty endpoint gives InvalidArgument and leaves its id free",
    nic_empty_endpoint
);

super::check!(
    BadInput,
    bad_input_share_relative_path,
    "a share with a relative host path gives InvalidArgument and leaves its name free",
    share_relative_path
);

super::check!(
    BadInput,
    bad_input_share_file_not_folder,
    "a share whose host path is a file gives InvalidArgument and leaves its name free",
    share_file_not_folder
);

super::check!(
    BadInput,
    bad_input_share_escaping_allowed_file,
    "a share whose allowed files escape the folder gives InvalidArgument and leaves its name free",
    share_escaping_allowed_file
);

super::check!(
    BadInput,
    bad_input_share_malformed_name,
    "a share name with a slash gives InvalidArgument",
    share_malformed_name
);

super::check!(
    BadInput,
    bad_input_pci_malformed_id,
    "a PCI device with an empty id gives InvalidArgument",
    pci_malformed_id
);

super::check!(
    BadInput,
    bad_input_pci_missing_device,
    "a PCI device whose host path does not exist gives InvalidArgument and leaves its id free",
    pci_missing_device
);
