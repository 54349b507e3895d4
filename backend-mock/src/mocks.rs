//! `mockall` mocks of every trait in `uvm-api`, for unit tests of a shim's own logic.
//!
//! Each mock is named after its trait with a `Mock` prefix. Accessors that
//! return a manager (`scsi()`, `network()`, ...) return `Option<&dyn Trait>`:
//! set them with `return_const`, pointing at a mock manager that outlives the
//! VM mock (for example one leaked with `Box::leak`, or held in a `static`).
//!
//! ```
//! use uvm_api::{State, Uvm};
//! use uvm_backend_mock::mocks::MockUvm;
//!
//! let mut vm = MockUvm::new();
//! vm.expect_state().return_const(State::Running);
//! assert_eq!(vm.state(), State::Running);
//! ```

#![allow(missing_docs)] // mockall generates undocumented items.

use std::path::Path;

use async_trait::async_trait;
use mockall::mock;
use uvm_api::{
    Action, Backend, Capabilities, CpuGroupManager, ExitError, ExitStatus, GuestAction,
    GuestBlockDevice, GuestNic, GuestOs, GuestPmem, GuestProbe, GuestShare, MemoryManager,
    NetworkManager, Nic, Operation, PciDevice, PciManager, ProcessorLimits, ProcessorManager,
    Removal, Resource, Result, ScsiDisk, ScsiManager, ShareKind, SharedFolder, SharedFolderManager,
    State, Stats, StopMode, Uvm, UvmConfig, VmSocketManager, VpmemController, VpmemDevice,
    VpmemManager, VsockListener, VsockStream,
};

mock! {
    /// Mock of [`uvm_api::Uvm`].
    pub Uvm {}

    #[async_trait]
    impl Uvm for Uvm {
        fn id(&self) -> &str;
        fn state(&self) -> State;
        async fn start(&self) -> Result<()>;
        async fn stop(&self, mode: StopMode) -> Result<()>;
        async fn pause(&self) -> Result<()>;
        async fn resume(&self) -> Result<()>;
        async fn save(&self, dest: &Path) -> Result<()>;
        async fn wait(&self) -> ExitStatus;
        fn exit_status(&self) -> Option<ExitStatus>;
        async fn stats(&self) -> Result<Stats>;
        fn supported(&self, resource: Resource, operation: Operation) -> bool;
        fn supports_action(&self, action: Action) -> bool;
        fn exit_error(&self) -> Option<ExitError>;
        fn scsi<'a>(&'a self) -> Option<&'a (dyn ScsiManager + 'static)>;
        fn vpmem<'a>(&'a self) -> Option<&'a (dyn VpmemManager + 'static)>;
        fn network<'a>(&'a self) -> Option<&'a (dyn NetworkManager + 'static)>;
        fn pci<'a>(&'a self) -> Option<&'a (dyn PciManager + 'static)>;
        fn vm_socket<'a>(&'a self) -> Option<&'a (dyn VmSocketManager + 'static)>;
        fn shared_folders<'a>(&'a self) -> Option<&'a (dyn SharedFolderManager + 'static)>;
        fn memory<'a>(&'a self) -> Option<&'a (dyn MemoryManager + 'static)>;
        fn processor<'a>(&'a self) -> Option<&'a (dyn ProcessorManager + 'static)>;
        fn cpu_group<'a>(&'a self) -> Option<&'a (dyn CpuGroupManager + 'static)>;
        fn guest_probe<'a>(&'a self) -> Option<&'a (dyn GuestProbe + 'static)>;
    }
}

mock! {
    /// Mock of [`uvm_api::Backend`].
    pub Backend {}

    #[async_trait]
    impl Backend for Backend {
        fn name(&self) -> &str;
        fn capabilities(&self) -> Capabilities;
        fn supports_guest_os(&self, os: GuestOs) -> bool;
        fn check_available(&self) -> Result<()>;
        async fn create(&self, config: UvmConfig) -> Result<Box<dyn Uvm>>;
        async fn restore(&self, snapshot: &Path) -> Result<Box<dyn Uvm>>;
    }
}

mock! {
    /// Mock of [`uvm_api::ScsiManager`].
    pub ScsiManager {}

    #[async_trait]
    impl ScsiManager for ScsiManager {
        async fn add_controller(&self, index: u8) -> Result<()>;
        async fn remove_controller(&self, index: u8) -> Result<Removal>;
        async fn add_disk(&self, disk: ScsiDisk) -> Result<()>;
        async fn remove_disk(&self, controller: u8, lun: u8) -> Result<Removal>;
    }
}

mock! {
    /// Mock of [`uvm_api::VpmemManager`].
    pub VpmemManager {}

    #[async_trait]
    impl VpmemManager for VpmemManager {
        async fn add_controller(&self, controller: VpmemController) -> Result<()>;
        async fn add_device(&self, device: VpmemDevice) -> Result<()>;
        async fn remove_device(&self, id: u32) -> Result<Removal>;
    }
}

mock! {
    /// Mock of [`uvm_api::NetworkManager`].
    pub NetworkManager {}

    #[async_trait]
    impl NetworkManager for NetworkManager {
        async fn add_nic(&self, nic: Nic) -> Result<()>;
        async fn remove_nic(&self, id: &str) -> Result<Removal>;
    }
}

mock! {
    /// Mock of [`uvm_api::PciManager`].
    pub PciManager {}

    #[async_trait]
    impl PciManager for PciManager {
        async fn add_device(&self, device: PciDevice) -> Result<()>;
        async fn remove_device(&self, id: &str) -> Result<Removal>;
    }
}

mock! {
    /// Mock of [`uvm_api::SharedFolderManager`].
    pub SharedFolderManager {}

    #[async_trait]
    impl SharedFolderManager for SharedFolderManager {
        async fn add_share(&self, share: SharedFolder) -> Result<()>;
        async fn remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal>;
    }
}

mock! {
    /// Mock of [`uvm_api::MemoryManager`].
    pub MemoryManager {}

    #[async_trait]
    impl MemoryManager for MemoryManager {
        async fn update_memory(&self, size_mib: u64) -> Result<()>;
    }
}

mock! {
    /// Mock of [`uvm_api::ProcessorManager`].
    pub ProcessorManager {}

    #[async_trait]
    impl ProcessorManager for ProcessorManager {
        async fn update_limits(&self, limits: ProcessorLimits) -> Result<()>;
    }
}

mock! {
    /// Mock of [`uvm_api::CpuGroupManager`].
    pub CpuGroupManager {}

    #[async_trait]
    impl CpuGroupManager for CpuGroupManager {
        async fn set_cpu_group(&self, group_id: &str) -> Result<()>;
    }
}

mock! {
    /// Mock of [`uvm_api::VmSocketManager`].
    pub VmSocketManager {}

    #[async_trait]
    impl VmSocketManager for VmSocketManager {
        async fn listen(&self, port: u32) -> Result<Box<dyn VsockListener>>;
        async fn connect(&self, port: u32) -> Result<VsockStream>;
    }
}

mock! {
    /// Mock of [`uvm_api::VsockListener`].
    pub VsockListener {}

    #[async_trait]
    impl VsockListener for VsockListener {
        fn port(&self) -> u32;
        async fn accept(&mut self) -> Result<VsockStream>;
    }
}

mock! {
    /// Mock of [`uvm_api::GuestProbe`].
    pub GuestProbe {}

    #[async_trait]
    impl GuestProbe for GuestProbe {
        async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>>;
        async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
        async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()>;
        async fn network_interfaces(&self) -> Result<Vec<GuestNic>>;
        async fn pmem_devices(&self) -> Result<Vec<GuestPmem>>;
        async fn shares(&self) -> Result<Vec<GuestShare>>;
        async fn list_share(&self, tag: &str) -> Result<Vec<String>>;
        async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>>;
        async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()>;
        async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>>;
        async fn serve_echo(&self, port: u32) -> Result<()>;
        async fn uptime(&self) -> Result<std::time::Duration>;
        async fn trigger(&self, action: GuestAction) -> Result<()>;
    }
}
