//! The seam of the mutation self-test: a [`Lie`] is a set of hooks, one per
//! call of the contract, each of which by default passes the call on to the
//! honest fake. A mutant overrides the one hook it lies in, so each mutant is
//! a few lines that say exactly which promise it breaks.
//!
//! [`LyingBackend`] wraps the fake backend and every VM it makes: every call
//! goes through the hook of a `Lie` made for that VM (so a lie may keep
//! per-VM state in itself), backend calls through one made for the backend.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uvm_api::{
    Action, Backend, Capabilities, CpuGroupManager, ExitStatus, GuestAction, GuestBlockDevice,
    GuestNic, GuestOs, GuestPmem, GuestProbe, GuestShare, MemoryManager, NetworkManager, Nic,
    Operation, PciDevice, PciManager, ProcessorLimits, ProcessorManager, Removal, Resource, Result,
    ScsiDisk, ScsiManager, ShareKind, SharedFolder, SharedFolderManager, State, Stats, StopMode,
    Uvm, UvmConfig, VmSocketManager, VpmemController, VpmemDevice, VpmemManager, VsockListener,
    VsockStream,
};
use uvm_backend_mock::FakeBackend;

/// The SCSI manager of the honest VM (the wrapper only offers a manager the
/// inner VM has).
pub fn scsi(vm: &dyn Uvm) -> &dyn ScsiManager {
    vm.scsi().expect("the fake has SCSI")
}
/// The VPMem manager of the honest VM.
pub fn vpmem(vm: &dyn Uvm) -> &dyn VpmemManager {
    vm.vpmem().expect("the fake has VPMem")
}
/// The network manager of the honest VM.
pub fn network(vm: &dyn Uvm) -> &dyn NetworkManager {
    vm.network().expect("the fake has networking")
}
/// The PCI manager of the honest VM.
pub fn pci(vm: &dyn Uvm) -> &dyn PciManager {
    vm.pci().expect("the fake has PCI")
}
/// The shared-folder manager of the honest VM.
pub fn shares(vm: &dyn Uvm) -> &dyn SharedFolderManager {
    vm.shared_folders().expect("the fake has shares")
}
/// The vsock manager of the honest VM.
pub fn vsock(vm: &dyn Uvm) -> &dyn VmSocketManager {
    vm.vm_socket().expect("the fake has vsock")
}
/// The memory manager of the honest VM.
pub fn memory(vm: &dyn Uvm) -> &dyn MemoryManager {
    vm.memory().expect("the fake has memory updates")
}
/// The processor manager of the honest VM.
pub fn processor(vm: &dyn Uvm) -> &dyn ProcessorManager {
    vm.processor().expect("the fake has processor updates")
}
/// The CPU group manager of the honest VM.
pub fn cpu_group(vm: &dyn Uvm) -> &dyn CpuGroupManager {
    vm.cpu_group().expect("the fake has CPU groups")
}
/// The guest probe of the honest VM.
pub fn probe(vm: &dyn Uvm) -> &dyn GuestProbe {
    vm.guest_probe().expect("the fake has a guest probe")
}

/// One hook per call of the contract; every default is the honest call.
#[allow(unused_variables)]
#[async_trait]
pub trait Lie: Send + Sync + 'static {
    /// The lie of a new VM of this backend; `None` (the default) makes a
    /// fresh one with the mutant's constructor. A lie that spans the VMs of
    /// a backend (ids or ports reserved backend-wide) returns one that
    /// shares its state.
    fn for_vm(&self) -> Option<Box<dyn Lie>> {
        None
    }

    /// The honest fake the lie wraps; a lie that needs a window (a removal
    /// still pending) picks one whose guest is slower to let go.
    fn honest_backend(&self) -> FakeBackend {
        FakeBackend::new()
    }

    // The backend.
    fn capabilities(&self, honest: Capabilities) -> Capabilities {
        honest
    }
    async fn create(&self, backend: &FakeBackend, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        backend.create(config).await
    }
    async fn restore(&self, backend: &FakeBackend, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        backend.restore(snapshot).await
    }
    fn supports_guest_os(&self, honest: bool, os: GuestOs) -> bool {
        honest
    }

    // The lifecycle.
    fn state(&self, vm: &dyn Uvm) -> State {
        vm.state()
    }
    async fn start(&self, vm: &dyn Uvm) -> Result<()> {
        vm.start().await
    }
    async fn stop(&self, vm: &dyn Uvm, mode: StopMode) -> Result<()> {
        vm.stop(mode).await
    }
    async fn pause(&self, vm: &dyn Uvm) -> Result<()> {
        vm.pause().await
    }
    async fn resume(&self, vm: &dyn Uvm) -> Result<()> {
        vm.resume().await
    }
    async fn save(&self, vm: &dyn Uvm, dest: &Path) -> Result<()> {
        vm.save(dest).await
    }
    async fn wait(&self, vm: &dyn Uvm) -> ExitStatus {
        vm.wait().await
    }
    fn exit_status(&self, vm: &dyn Uvm) -> Option<ExitStatus> {
        vm.exit_status()
    }
    async fn stats(&self, vm: &dyn Uvm) -> Result<Stats> {
        vm.stats().await
    }
    fn supported(&self, vm: &dyn Uvm, resource: Resource, operation: Operation) -> bool {
        vm.supported(resource, operation)
    }
    fn supports_action(&self, vm: &dyn Uvm, action: Action) -> bool {
        vm.supports_action(action)
    }

    // SCSI.
    async fn add_scsi_controller(&self, vm: &dyn Uvm, index: u8) -> Result<()> {
        scsi(vm).add_controller(index).await
    }
    async fn remove_scsi_controller(&self, vm: &dyn Uvm, index: u8) -> Result<Removal> {
        scsi(vm).remove_controller(index).await
    }
    async fn add_disk(&self, vm: &dyn Uvm, disk: ScsiDisk) -> Result<()> {
        scsi(vm).add_disk(disk).await
    }
    async fn remove_disk(&self, vm: &dyn Uvm, controller: u8, lun: u8) -> Result<Removal> {
        scsi(vm).remove_disk(controller, lun).await
    }

    // VPMem.
    async fn add_vpmem_controller(&self, vm: &dyn Uvm, c: VpmemController) -> Result<()> {
        vpmem(vm).add_controller(c).await
    }
    async fn add_vpmem_device(&self, vm: &dyn Uvm, device: VpmemDevice) -> Result<()> {
        vpmem(vm).add_device(device).await
    }
    async fn remove_vpmem_device(&self, vm: &dyn Uvm, id: u32) -> Result<Removal> {
        vpmem(vm).remove_device(id).await
    }

    // Network.
    async fn add_nic(&self, vm: &dyn Uvm, nic: Nic) -> Result<()> {
        network(vm).add_nic(nic).await
    }
    async fn remove_nic(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        network(vm).remove_nic(id).await
    }

    // PCI.
    async fn add_pci_device(&self, vm: &dyn Uvm, device: PciDevice) -> Result<()> {
        pci(vm).add_device(device).await
    }
    async fn remove_pci_device(&self, vm: &dyn Uvm, id: &str) -> Result<Removal> {
        pci(vm).remove_device(id).await
    }

    // Shared folders.
    async fn add_share(&self, vm: &dyn Uvm, share: SharedFolder) -> Result<()> {
        shares(vm).add_share(share).await
    }
    async fn remove_share(&self, vm: &dyn Uvm, kind: ShareKind, name: &str) -> Result<Removal> {
        shares(vm).remove_share(kind, name).await
    }

    // vsock.
    async fn listen(&self, vm: &dyn Uvm, port: u32) -> Result<Box<dyn VsockListener>> {
        vsock(vm).listen(port).await
    }
    async fn connect(&self, vm: &dyn Uvm, port: u32) -> Result<VsockStream> {
        vsock(vm).connect(port).await
    }

    // Memory, processor, CPU group.
    async fn update_memory(&self, vm: &dyn Uvm, size_mib: u64) -> Result<()> {
        memory(vm).update_memory(size_mib).await
    }
    async fn update_limits(&self, vm: &dyn Uvm, limits: ProcessorLimits) -> Result<()> {
        processor(vm).update_limits(limits).await
    }
    async fn set_cpu_group(&self, vm: &dyn Uvm, group_id: &str) -> Result<()> {
        cpu_group(vm).set_cpu_group(group_id).await
    }

    // The guest probe (what the guest sees, as the backend reports it).
    async fn block_devices(&self, vm: &dyn Uvm) -> Result<Vec<GuestBlockDevice>> {
        probe(vm).block_devices().await
    }
    async fn network_interfaces(&self, vm: &dyn Uvm) -> Result<Vec<GuestNic>> {
        probe(vm).network_interfaces().await
    }
    async fn pmem_devices(&self, vm: &dyn Uvm) -> Result<Vec<GuestPmem>> {
        probe(vm).pmem_devices().await
    }
    async fn guest_shares(&self, vm: &dyn Uvm) -> Result<Vec<GuestShare>> {
        probe(vm).shares().await
    }
    async fn dial_host(&self, vm: &dyn Uvm, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        probe(vm).dial_host(port, payload).await
    }
    async fn serve_echo(&self, vm: &dyn Uvm, port: u32) -> Result<()> {
        probe(vm).serve_echo(port).await
    }
}

/// Makes the lie of one VM (or of the backend).
pub type MakeLie = Arc<dyn Fn() -> Box<dyn Lie> + Send + Sync>;

/// The fake, with a lie in every VM it makes.
pub struct LyingBackend {
    honest: FakeBackend,
    make: MakeLie,
    own: Box<dyn Lie>,
}

impl LyingBackend {
    pub fn new(make: MakeLie) -> LyingBackend {
        let own = make();
        LyingBackend {
            honest: own.honest_backend(),
            own,
            make,
        }
    }
}

impl LyingBackend {
    fn lie_of_vm(&self) -> Box<dyn Lie> {
        self.own.for_vm().unwrap_or_else(|| (self.make)())
    }
}

#[async_trait]
impl Backend for LyingBackend {
    fn name(&self) -> &str {
        self.honest.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.own.capabilities(self.honest.capabilities())
    }
    fn supports_guest_os(&self, os: GuestOs) -> bool {
        self.own
            .supports_guest_os(self.honest.supports_guest_os(os), os)
    }
    async fn create(&self, config: UvmConfig) -> Result<Box<dyn Uvm>> {
        let vm = self.own.create(&self.honest, config).await?;
        Ok(Box::new(LyingUvm {
            honest: vm,
            lie: self.lie_of_vm(),
        }))
    }
    async fn restore(&self, snapshot: &Path) -> Result<Box<dyn Uvm>> {
        let vm = self.own.restore(&self.honest, snapshot).await?;
        Ok(Box::new(LyingUvm {
            honest: vm,
            lie: self.lie_of_vm(),
        }))
    }
}

/// One VM of the fake, every call through its lie.
struct LyingUvm {
    honest: Box<dyn Uvm>,
    lie: Box<dyn Lie>,
}

impl LyingUvm {
    fn vm(&self) -> &dyn Uvm {
        &*self.honest
    }
}

#[async_trait]
impl Uvm for LyingUvm {
    fn id(&self) -> &str {
        self.honest.id()
    }
    fn state(&self) -> State {
        self.lie.state(self.vm())
    }
    async fn start(&self) -> Result<()> {
        self.lie.start(self.vm()).await
    }
    async fn stop(&self, mode: StopMode) -> Result<()> {
        self.lie.stop(self.vm(), mode).await
    }
    async fn pause(&self) -> Result<()> {
        self.lie.pause(self.vm()).await
    }
    async fn resume(&self) -> Result<()> {
        self.lie.resume(self.vm()).await
    }
    async fn save(&self, dest: &Path) -> Result<()> {
        self.lie.save(self.vm(), dest).await
    }
    async fn wait(&self) -> ExitStatus {
        self.lie.wait(self.vm()).await
    }
    fn exit_status(&self) -> Option<ExitStatus> {
        self.lie.exit_status(self.vm())
    }
    async fn stats(&self) -> Result<Stats> {
        self.lie.stats(self.vm()).await
    }
    fn supported(&self, resource: Resource, operation: Operation) -> bool {
        self.lie.supported(self.vm(), resource, operation)
    }
    fn supports_action(&self, action: Action) -> bool {
        self.lie.supports_action(self.vm(), action)
    }
    fn scsi(&self) -> Option<&dyn ScsiManager> {
        self.honest.scsi().map(|_| self as &dyn ScsiManager)
    }
    fn vpmem(&self) -> Option<&dyn VpmemManager> {
        self.honest.vpmem().map(|_| self as &dyn VpmemManager)
    }
    fn network(&self) -> Option<&dyn NetworkManager> {
        self.honest.network().map(|_| self as &dyn NetworkManager)
    }
    fn pci(&self) -> Option<&dyn PciManager> {
        self.honest.pci().map(|_| self as &dyn PciManager)
    }
    fn vm_socket(&self) -> Option<&dyn VmSocketManager> {
        self.honest
            .vm_socket()
            .map(|_| self as &dyn VmSocketManager)
    }
    fn shared_folders(&self) -> Option<&dyn SharedFolderManager> {
        self.honest
            .shared_folders()
            .map(|_| self as &dyn SharedFolderManager)
    }
    fn memory(&self) -> Option<&dyn MemoryManager> {
        self.honest.memory().map(|_| self as &dyn MemoryManager)
    }
    fn processor(&self) -> Option<&dyn ProcessorManager> {
        self.honest
            .processor()
            .map(|_| self as &dyn ProcessorManager)
    }
    fn cpu_group(&self) -> Option<&dyn CpuGroupManager> {
        self.honest
            .cpu_group()
            .map(|_| self as &dyn CpuGroupManager)
    }
    fn guest_probe(&self) -> Option<&dyn GuestProbe> {
        self.honest.guest_probe().map(|_| self as &dyn GuestProbe)
    }
}

#[async_trait]
impl ScsiManager for LyingUvm {
    async fn add_controller(&self, index: u8) -> Result<()> {
        self.lie.add_scsi_controller(self.vm(), index).await
    }
    async fn remove_controller(&self, index: u8) -> Result<Removal> {
        self.lie.remove_scsi_controller(self.vm(), index).await
    }
    async fn add_disk(&self, disk: ScsiDisk) -> Result<()> {
        self.lie.add_disk(self.vm(), disk).await
    }
    async fn remove_disk(&self, controller: u8, lun: u8) -> Result<Removal> {
        self.lie.remove_disk(self.vm(), controller, lun).await
    }
}

#[async_trait]
impl VpmemManager for LyingUvm {
    async fn add_controller(&self, controller: VpmemController) -> Result<()> {
        self.lie.add_vpmem_controller(self.vm(), controller).await
    }
    async fn add_device(&self, device: VpmemDevice) -> Result<()> {
        self.lie.add_vpmem_device(self.vm(), device).await
    }
    async fn remove_device(&self, id: u32) -> Result<Removal> {
        self.lie.remove_vpmem_device(self.vm(), id).await
    }
}

#[async_trait]
impl NetworkManager for LyingUvm {
    async fn add_nic(&self, nic: Nic) -> Result<()> {
        self.lie.add_nic(self.vm(), nic).await
    }
    async fn remove_nic(&self, id: &str) -> Result<Removal> {
        self.lie.remove_nic(self.vm(), id).await
    }
}

#[async_trait]
impl PciManager for LyingUvm {
    async fn add_device(&self, device: PciDevice) -> Result<()> {
        self.lie.add_pci_device(self.vm(), device).await
    }
    async fn remove_device(&self, id: &str) -> Result<Removal> {
        self.lie.remove_pci_device(self.vm(), id).await
    }
}

#[async_trait]
impl SharedFolderManager for LyingUvm {
    async fn add_share(&self, share: SharedFolder) -> Result<()> {
        self.lie.add_share(self.vm(), share).await
    }
    async fn remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal> {
        self.lie.remove_share(self.vm(), kind, name).await
    }
}

#[async_trait]
impl VmSocketManager for LyingUvm {
    async fn listen(&self, port: u32) -> Result<Box<dyn VsockListener>> {
        self.lie.listen(self.vm(), port).await
    }
    async fn connect(&self, port: u32) -> Result<VsockStream> {
        self.lie.connect(self.vm(), port).await
    }
}

#[async_trait]
impl MemoryManager for LyingUvm {
    async fn update_memory(&self, size_mib: u64) -> Result<()> {
        self.lie.update_memory(self.vm(), size_mib).await
    }
}

#[async_trait]
impl ProcessorManager for LyingUvm {
    async fn update_limits(&self, limits: ProcessorLimits) -> Result<()> {
        self.lie.update_limits(self.vm(), limits).await
    }
}

#[async_trait]
impl CpuGroupManager for LyingUvm {
    async fn set_cpu_group(&self, group_id: &str) -> Result<()> {
        self.lie.set_cpu_group(self.vm(), group_id).await
    }
}

#[async_trait]
impl GuestProbe for LyingUvm {
    async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>> {
        self.lie.block_devices(self.vm()).await
    }
    async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        probe(self.vm()).read_block(name, offset, len).await
    }
    async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        probe(self.vm()).write_block(name, offset, data).await
    }
    async fn network_interfaces(&self) -> Result<Vec<GuestNic>> {
        self.lie.network_interfaces(self.vm()).await
    }
    async fn pmem_devices(&self) -> Result<Vec<GuestPmem>> {
        self.lie.pmem_devices(self.vm()).await
    }
    async fn shares(&self) -> Result<Vec<GuestShare>> {
        self.lie.guest_shares(self.vm()).await
    }
    async fn list_share(&self, tag: &str) -> Result<Vec<String>> {
        probe(self.vm()).list_share(tag).await
    }
    async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>> {
        probe(self.vm()).read_share_file(tag, path).await
    }
    async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()> {
        probe(self.vm()).write_share_file(tag, path, data).await
    }
    async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        self.lie.dial_host(self.vm(), port, payload).await
    }
    async fn serve_echo(&self, port: u32) -> Result<()> {
        self.lie.serve_echo(self.vm(), port).await
    }
    async fn uptime(&self) -> Result<Duration> {
        probe(self.vm()).uptime().await
    }
    async fn trigger(&self, action: GuestAction) -> Result<()> {
        probe(self.vm()).trigger(action).await
    }
}
