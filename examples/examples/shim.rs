//! What a container shim does with uvm, on a backend named at run time.
//!
//! ```text
//! cargo run --example shim -- --backend mock
//! cargo xtask lab -- shim --backend kvm     # the Debian test guest on nested KVM
//! ```
//!
//! Creates a VM, listens for the guest agent on vsock, starts it, waits for
//! the guest agent, hot-adds a layer disk and checks the guest sees it,
//! takes a guest connection, reads stats, removes the disk, and stops the
//! VM gracefully.
//!
//! A backend that boots a real kernel (`kvm`) takes it from `--kernel`,
//! `--initrd` and `--cmdline`, or else from the test guest `cargo xtask
//! guest` built (`UVM_GUEST_ASSETS` names its `assets.json`; `cargo xtask
//! lab` sets it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_api::{
    ConsoleSink, Error, GuestProbe, Operation, Resource, Result, UvmConfig, VsockListener,
};
use uvm_examples::{
    LayerAttachment, attach_layer, choose_backend, default_registry, detach_layer, shutdown,
};
use uvm_tools::guest_assets::{AssetsError, GuestAssets};

/// Drive one UVM through the uvm traits.
#[derive(Debug, Parser)]
struct Args {
    /// Backend to use (see the list printed on error); default: the first
    /// available hypervisor, else the mock.
    #[arg(long)]
    backend: Option<String>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mib: u64,
    /// Kernel to boot (backends that boot one; default: the test guest of
    /// `UVM_GUEST_ASSETS`).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk (with `--kernel`).
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line (with `--kernel`).
    #[arg(long, requires = "kernel")]
    cmdline: Option<String>,
}

/// Kernel, initrd and command line for a backend that boots a kernel.
fn boot_files(args: &Args) -> Result<Option<(PathBuf, Option<PathBuf>, String)>> {
    if let Some(kernel) = &args.kernel {
        return Ok(Some((
            kernel.clone(),
            args.initrd.clone(),
            args.cmdline.clone().unwrap_or_default(),
        )));
    }
    match GuestAssets::from_env() {
        Ok(assets) => Ok(Some((
            assets.kernel.clone(),
            Some(assets.initrd.clone()),
            assets.recommended_cmdline(""),
        ))),
        Err(AssetsError::NotSet) => Ok(None),
        Err(e) => Err(Error::invalid_argument("UVM_GUEST_ASSETS", e.to_string())),
    }
}

/// The vsock port the host listens on for the guest.
const AGENT_PORT: u32 = 1024;
/// Size of the layer image the demo attaches.
const LAYER_BYTES: usize = 4 << 20;

/// Runs the demo; exit code 0 when every step worked.
#[tokio::main]
pub async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let registry = default_registry()?;
    let choice = choose_backend(&registry, args.backend.as_deref())?;
    if let Some(note) = &choice.note {
        println!("note: {note}");
    }

    let scratch = tempfile::tempdir().map_err(|e| Error::io("creating a scratch directory", e))?;
    let layer = scratch.path().join("layer.img");
    let contents: Vec<u8> = (0..LAYER_BYTES).map(|i| (i % 251) as u8).collect();
    std::fs::write(&layer, &contents).map_err(|e| Error::io("writing the layer image", e))?;

    let mut builder = UvmConfig::builder("shim-demo")
        .vcpus(args.vcpus)
        .memory_mib(args.memory_mib)
        .console(ConsoleSink::Log);
    // A SCSI controller for the layer disk, if the backend has SCSI.
    if registry
        .get(&choice.name)?
        .capabilities()
        .supports(Resource::Scsi, Operation::Add)
    {
        builder = builder.scsi_controllers(1);
    }
    if choice.name == uvm_backend_kvm::BACKEND_NAME {
        let Some((kernel, initrd, cmdline)) = boot_files(&args)? else {
            return Err(Error::invalid_argument(
                "--kernel",
                "the kvm backend boots a kernel: pass --kernel/--initrd/--cmdline or set UVM_GUEST_ASSETS (cargo xtask lab does)",
            ));
        };
        builder = builder.kernel(kernel).cmdline(cmdline);
        if let Some(initrd) = initrd {
            builder = builder.initrd(initrd);
        }
    }
    let config = builder.build()?;
    let vm = registry.create(&choice.name, config).await?;
    println!(
        "[1] created VM {} with backend {:?} ({} vCPUs, {} MiB): state {}",
        vm.id(),
        choice.name,
        args.vcpus,
        args.memory_mib,
        vm.state()
    );

    let mut listener = match vm.vm_socket() {
        Some(sockets) if vm.supported(Resource::VmSocket, Operation::Add) => {
            Some(sockets.listen(AGENT_PORT).await?)
        }
        _ => None,
    };
    vm.start().await?;
    println!("[2] started: state {}", vm.state());
    if let Some(probe) = vm.guest_probe() {
        let asked = std::time::Instant::now();
        let uptime = probe.uptime().await?;
        println!(
            "    the guest agent answers: guest uptime {uptime:.2?} (waited {:.2?} for it)",
            asked.elapsed()
        );
    }

    let attachment = match attach_layer(vm.as_ref(), 0, 0, &layer).await {
        Ok(attachment) => {
            println!("[3] layer disk added: {attachment:?}");
            match vm.guest_probe() {
                Some(probe) => show_disk_in_guest(probe, &attachment, &contents).await?,
                None => {
                    println!("    (this backend has no guest view; not checked inside the guest)")
                }
            }
            Some(attachment)
        }
        Err(Error::NotSupported { .. }) => {
            println!("[3] this backend cannot add disks (supported() says so); skipped");
            None
        }
        Err(other) => return Err(other),
    };

    match (listener.as_mut(), vm.guest_probe()) {
        (Some(listener), Some(probe)) => guest_connection(listener.as_mut(), probe).await?,
        (None, _) => println!("[4] vsock not supported by this backend; skipped"),
        (Some(_), None) => println!("[4] no guest view to dial from; skipped"),
    }

    let stats = vm.stats().await?;
    println!(
        "[5] stats: uptime {:?}, vCPU time {:?} over {} vCPUs, memory {} MiB assigned",
        stats.uptime,
        stats.processor.total_runtime,
        stats.processor.per_vcpu.len(),
        stats.memory.assigned_bytes >> 20
    );

    if let Some(attachment) = attachment {
        detach_layer(vm.as_ref(), attachment, Duration::from_secs(10)).await?;
        let still_there = match vm.guest_probe() {
            Some(probe) => find_disk(probe, &attachment).await?.is_some(),
            None => false,
        };
        println!(
            "[6] layer disk removed and released by the guest; guest still sees it: {still_there}"
        );
    }

    drop(listener);
    let status = shutdown(vm.as_ref(), Duration::from_secs(10)).await?;
    println!("[7] stopped with reason {status}; state {}", vm.state());
    Ok(())
}

async fn find_disk(
    probe: &dyn GuestProbe,
    attachment: &LayerAttachment,
) -> Result<Option<uvm_api::GuestBlockDevice>> {
    let LayerAttachment::Scsi { controller, lun } = *attachment else {
        return Ok(None);
    };
    Ok(probe
        .block_devices()
        .await?
        .into_iter()
        .find(|d| d.scsi_address == Some((controller, lun))))
}

async fn show_disk_in_guest(
    probe: &dyn GuestProbe,
    attachment: &LayerAttachment,
    contents: &[u8],
) -> Result<()> {
    // A hot-added disk takes the guest a moment to scan.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut found = find_disk(probe, attachment).await?;
    while found.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        found = find_disk(probe, attachment).await?;
    }
    let Some(disk) = found else {
        if matches!(attachment, LayerAttachment::Vpmem { .. }) {
            let pmem = probe.pmem_devices().await?;
            println!("    guest sees pmem devices: {pmem:?}");
            return Ok(());
        }
        return Err(Error::Backend(
            "the guest does not see the added disk".into(),
        ));
    };
    let head = probe.read_block(&disk.name, 0, 64).await?;
    let matches = head.as_slice() == &contents[..64];
    println!(
        "    guest sees /dev/{} ({} bytes, read-only: {}); first 64 bytes match the host image: {matches}",
        disk.name, disk.size_bytes, disk.read_only
    );
    if matches {
        Ok(())
    } else {
        Err(Error::Backend(
            "the guest reads other bytes than the host wrote".into(),
        ))
    }
}

async fn guest_connection(listener: &mut dyn VsockListener, probe: &dyn GuestProbe) -> Result<()> {
    let port = listener.port();
    let host_side = async {
        let mut stream = listener.accept().await?;
        let mut request = Vec::new();
        stream
            .read_to_end(&mut request)
            .await
            .map_err(|e| Error::io("reading from the guest", e))?;
        stream
            .write_all(b"hello from the host")
            .await
            .map_err(|e| Error::io("writing to the guest", e))?;
        stream
            .shutdown()
            .await
            .map_err(|e| Error::io("closing the guest connection", e))?;
        Ok::<_, Error>(request)
    };
    let (request, reply) =
        tokio::try_join!(host_side, probe.dial_host(port, b"hello from the guest"))?;
    println!(
        "[4] listener on port {port} accepted a guest connection: guest said {:?}, guest got {:?}",
        String::from_utf8_lossy(&request),
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}
