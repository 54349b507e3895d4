//! A booted guest of either VMM, as `io-bench` measures it: the guest
//! agent (a client with a timeout long enough for the benchmark ops), the
//! host ends of vsock, the VMM's hot-add ([`Target`], from
//! [`crate::hotplug`]) for the disk and the NIC, and backend-kvm's exit
//! counter.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_api::{GuestProbe, VmSocketManager, VsockListener as ApiListener, VsockStream};
use uvm_guest_agent::client::AgentClient;
use uvm_guest_agent::protocol::{Empty, Op};
use uvm_guest_agent::server::VsockListener as KernelListener;

use super::tap;
use crate::error::{BenchError, Result};
use crate::hotplug::api::ApiTarget;
use crate::hotplug::device::{self, Device, Names, Spec};
use crate::hotplug::kind::{Kind, Mark};
use crate::hotplug::poll::Poll;
use crate::hotplug::qemu::{self, QemuGuest, QemuTarget};
use crate::hotplug::target::Target;
use crate::hotplug::vsock_io::{self, VsockConn};
use crate::hotplug::{self as hp};
use crate::kvm::KvmRun;

/// How long one agent request may take: the longest benchmark op plus a
/// margin.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(330);
/// How long the guest may take to show a hot-added device.
pub const SEEN_TIMEOUT: Duration = Duration::from_secs(60);
/// The disk's LUN on controller 0.
pub const LUN: u8 = 0;
/// Whether backend-kvm's stats counter `name` is one io-bench logs per
/// figure: the exits to user space (`exits.*`), and the devices' queue
/// kicks (exits KVM mostly handles in the kernel) and interrupts
/// (`virtio.kicks`, `virtio.interrupts`).
fn is_exit_counter(name: &str) -> bool {
    name.starts_with("exits.") || name.starts_with("virtio.")
}

/// The name the counter of all exits has in backend-kvm's stats.
pub const EXITS_TOTAL: &str = "exits.total";

/// backend-kvm's device names (`uvmik<run>`, MACs `02:6c:...`).
pub const NAMES_KVM: Names = Names {
    prefix: "ik",
    mac_octet: 0x6c,
};
/// QEMU's device names (`uvmiq<run>`, MACs `02:72:...`).
pub const NAMES_QEMU: Names = Names {
    prefix: "iq",
    mac_octet: 0x72,
};

/// The host ends of the guest's vsock device.
pub enum HostVsock {
    /// backend-kvm's in-process device, through its uvm-api manager.
    Api(Arc<dyn VmSocketManager>),
    /// QEMU's vhost-vsock: this host's `AF_VSOCK`, the guest at `cid`.
    Kernel {
        /// The guest's context id.
        cid: u32,
    },
}

/// A host listener of either kind.
pub enum HostListener {
    /// backend-kvm's.
    Api(Box<dyn ApiListener>),
    /// This host's `AF_VSOCK` socket.
    Kernel(Arc<KernelListener>),
}

impl HostVsock {
    /// Connects to guest `port`.
    pub async fn connect(&self, port: u32) -> Result<VsockStream> {
        match self {
            HostVsock::Api(manager) => manager.connect(port).await.map_err(BenchError::uvm(
                format!("vsock connect to guest port {port}"),
            )),
            HostVsock::Kernel { cid } => VsockConn::connect(*cid, port, vsock_io::CONNECT_TIMEOUT)
                .map(|c| Box::new(c) as VsockStream)
                .map_err(BenchError::io(format!("vsock connect to {cid}:{port}"))),
        }
    }

    /// Listens on host `port` for the guest.
    pub async fn listen(&self, port: u32) -> Result<HostListener> {
        match self {
            HostVsock::Api(manager) => manager
                .listen(port)
                .await
                .map(HostListener::Api)
                .map_err(BenchError::uvm(format!("vsock listen on port {port}"))),
            HostVsock::Kernel { .. } => KernelListener::bind(port)
                .map(|l| HostListener::Kernel(Arc::new(l)))
                .map_err(BenchError::io(format!("vsock listen on port {port}"))),
        }
    }
}

impl HostListener {
    /// Waits at most `timeout` for the guest's connection.
    pub async fn accept(&mut self, timeout: Duration) -> Result<VsockStream> {
        match self {
            HostListener::Api(listener) => tokio::time::timeout(timeout, listener.accept())
                .await
                .map_err(|_| BenchError::Timeout {
                    what: "the guest's vsock connection".into(),
                    after: timeout,
                })?
                .map_err(BenchError::uvm("vsock accept")),
            HostListener::Kernel(listener) => {
                let listener = listener.clone();
                let (file, _cid) =
                    tokio::task::spawn_blocking(move || listener.accept_within(timeout))
                        .await
                        .map_err(|e| BenchError::Vm(format!("the accepting task failed: {e}")))?
                        .map_err(BenchError::io("vsock accept"))?;
                VsockConn::from_file(file)
                    .map(|c| Box::new(c) as VsockStream)
                    .map_err(BenchError::io("vsock accept"))
            }
        }
    }
}

enum Machine {
    Kvm(ApiTarget),
    Qemu(Box<QemuTarget>),
}

/// The guest's end of the NIC and the host's tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicEnds {
    /// The guest's interface (`eth0`).
    pub interface: String,
    /// The host's tap.
    pub tap: String,
}

/// A running guest with its benchmark devices.
pub struct IoGuest {
    machine: Machine,
    /// The VMM's name in reports.
    pub vmm: &'static str,
    /// The guest agent, with [`AGENT_TIMEOUT`].
    pub agent: AgentClient,
    /// The host ends of vsock.
    pub vsock: HostVsock,
    names: Names,
    /// How long the boot took (start or spawn to the agent's answer).
    pub booted: Duration,
}

impl IoGuest {
    /// Boots backend-kvm's guest (with a SCSI controller).
    pub async fn boot_kvm(run: &KvmRun<'_>) -> Result<IoGuest> {
        let (vm, booted) = hp::kvm::boot_vm(run, &[Kind::Scsi, Kind::Nic], "io-bench").await?;
        let manager: Arc<dyn VmSocketManager> = vm.vsock().clone();
        let agent = AgentClient::over_vsock(manager.clone(), run.assets.agent_port)
            .with_timeout(AGENT_TIMEOUT);
        Ok(IoGuest {
            machine: Machine::Kvm(ApiTarget::new(Box::new(vm), hp::kvm::VMM, NAMES_KVM)),
            vmm: hp::kvm::VMM,
            agent,
            vsock: HostVsock::Api(manager),
            names: NAMES_KVM,
            booted,
        })
    }

    /// Boots QEMU's guest (with a virtio-scsi controller), its sockets and
    /// console in `dir`.
    pub async fn boot_qemu(guest: &QemuGuest<'_>, dir: &Path) -> Result<IoGuest> {
        let (target, booted) = QemuTarget::boot(guest, &[Kind::Scsi, Kind::Nic], dir).await?;
        Ok(IoGuest {
            machine: Machine::Qemu(Box::new(target)),
            vmm: qemu::VMM,
            agent: vsock_io::agent_client(qemu::CID, guest.assets.agent_port)
                .with_timeout(AGENT_TIMEOUT),
            vsock: HostVsock::Kernel { cid: qemu::CID },
            names: NAMES_QEMU,
            booted,
        })
    }

    fn target(&mut self) -> &mut dyn Target {
        match &mut self.machine {
            Machine::Kvm(target) => target,
            Machine::Qemu(target) => target.as_mut(),
        }
    }

    /// backend-kvm's exit counters so far (`exits.total` and each
    /// `exits.<kind>`, with the queue kicks and interrupts that stay in
    /// the host kernel, `virtio.*`); `None` for QEMU (or when stats fail).
    pub async fn exits(&self) -> Option<BTreeMap<String, u64>> {
        match &self.machine {
            Machine::Kvm(target) => {
                let stats = target.vm().stats().await.ok()?;
                let exits: BTreeMap<String, u64> = stats
                    .counters
                    .into_iter()
                    .filter(|(k, _)| is_exit_counter(k))
                    .collect();
                exits.contains_key(EXITS_TOTAL).then_some(exits)
            }
            Machine::Qemu(_) => None,
        }
    }

    /// The VMM's threads now: this process's for backend-kvm, the QEMU
    /// process's for QEMU (its vhost kernel threads are not among them).
    pub fn vmm_threads(&self) -> Vec<uvm_tools::threads::ThreadSample> {
        match &self.machine {
            Machine::Kvm(_) => uvm_tools::threads::of_this_process(),
            Machine::Qemu(target) => uvm_tools::threads::of_process(target.pid()),
        }
    }

    /// backend-kvm's exit counters (`exits.*`, `virtio.*`) now, as
    /// [`IoGuest::exits`] reads them; empty for QEMU.
    pub async fn exit_counters(&self) -> Vec<(String, u64)> {
        self.exits()
            .await
            .map(|exits| exits.into_iter().collect())
            .unwrap_or_default()
    }

    async fn add(&mut self, device: &Device) -> Result<Duration> {
        self.target().prepare(device).await?;
        self.target().add(device).await?;
        let added = Instant::now();
        let poll = Poll {
            gap: Duration::from_millis(20),
            timeout: SEEN_TIMEOUT,
        };
        let seen = poll.until(&self.agent, &device.mark(), true, added).await?;
        Ok(seen.after)
    }

    /// Hot-adds the raw `image` at LUN [`LUN`] of controller 0 and returns
    /// the guest's name of the disk.
    pub async fn attach_disk(&mut self, image: &Path) -> Result<String> {
        let device = Device {
            run: 1,
            spec: Spec::Scsi {
                lun: LUN,
                image: image.to_path_buf(),
            },
        };
        let after = self.add(&device).await?;
        let name = self
            .agent
            .block_devices()
            .await
            .map_err(BenchError::uvm("list the guest's disks"))?
            .into_iter()
            .find(|d| d.scsi_address == Some((0, LUN)))
            .map(|d| d.name)
            .ok_or_else(|| BenchError::Vm("the SCSI disk went away".into()))?;
        eprintln!(
            "io-bench: {}: disk {name} seen {:.0} ms after the add",
            self.vmm,
            after.as_secs_f64() * 1000.0
        );
        Ok(name)
    }

    /// Hot-adds a NIC on a fresh tap (named for `run`), sets both ends up
    /// and returns them.
    pub async fn attach_nic(&mut self, run: usize) -> Result<NicEnds> {
        let base = format!("{}{run}", self.names.prefix);
        let mac = device::mac(self.names, run)?;
        let tap = format!("uvm{base}");
        let device = Device {
            run,
            spec: Spec::Nic {
                id: format!("nic{base}"),
                tap: tap.clone(),
                mac,
            },
        };
        let after = self.add(&device).await?;
        let interface = self
            .agent
            .network_interfaces()
            .await
            .map_err(BenchError::uvm("list the guest's NICs"))?
            .into_iter()
            .find(|n| n.mac == mac)
            .map(|n| n.name)
            .ok_or_else(|| BenchError::Vm(format!("the {} went away", Mark::Mac(mac))))?;
        let _: Empty = self
            .agent
            .call(Op::SetLink {
                interface: interface.clone(),
                up: true,
            })
            .await
            .map_err(BenchError::uvm(format!("set {interface} up")))?;
        tap::set_up(&tap).map_err(BenchError::io(format!("set {tap} up")))?;
        eprintln!(
            "io-bench: {}: NIC {interface} on tap {tap} seen {:.0} ms after the add",
            self.vmm,
            after.as_secs_f64() * 1000.0
        );
        Ok(NicEnds { interface, tap })
    }

    /// Stops the VM (by force).
    pub async fn shut_down(self) {
        match self.machine {
            Machine::Kvm(target) => target.shut_down().await,
            Machine::Qemu(target) => target.shut_down(),
        }
    }
}

/// Writes `bytes` bytes to `stream` in 256 KiB writes and half-closes it.
pub async fn write_stream(stream: &mut VsockStream, bytes: u64) -> std::io::Result<()> {
    let chunk = vec![0xc3u8; 256 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.flush().await?;
    stream.shutdown().await
}

/// Reads `stream` until end of stream; returns the bytes read.
pub async fn drain_stream(stream: &mut VsockStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}
