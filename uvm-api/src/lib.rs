//! # uvm-api: the contract between container shims and hypervisor backends
//!
//! A shim creates a VM from a [`UvmConfig`] through a [`Registry`], naming the
//! backend at run time, then drives it through the [`Uvm`] trait and the
//! optional capability managers it exposes. It never needs to know which
//! hypervisor runs underneath, and it can ask each VM, truthfully, what it
//! can do ([`Uvm::supported`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use uvm_api::{DiskFormat, Error, Operation, Registry, Resource, ScsiDisk, StopMode, UvmConfig};
//!
//! async fn run_sandbox(registry: &Registry, backend: &str) -> Result<(), Error> {
//!     let config = UvmConfig::builder("sandbox-1")
//!         .vcpus(2)
//!         .memory_mib(512)
//!         .scsi_controllers(1)
//!         .build()?;
//!     let vm = registry.create(backend, config).await?; // "kvm", "mock", ...
//!     vm.start().await?;
//!
//!     // Hot-add a disk to the running guest, if this backend can.
//!     if vm.supported(Resource::Scsi, Operation::Add) {
//!         let scsi = vm.scsi().ok_or(Error::not_supported(Resource::Scsi, Operation::Add))?;
//!         scsi.add_disk(ScsiDisk {
//!             controller: 0,
//!             lun: 1,
//!             path: "/var/lib/sandbox/layer.img".into(),
//!             format: DiskFormat::Raw,
//!             read_only: true,
//!         })
//!         .await?;
//!     }
//!
//!     vm.stop(StopMode::Graceful { timeout: Duration::from_secs(5) }).await?;
//!     println!("stopped: {}", vm.wait().await);
//!     Ok(())
//! }
//! ```
//!
//! ## Lifecycle
//!
//! A VM is `Created` by [`Backend::create`], runs after [`Uvm::start`], may be
//! paused and resumed, and ends `Stopped`, which is terminal. Each operation
//! is valid in some states only; elsewhere it returns
//! [`Error::InvalidState`] and changes nothing. [`State::check`] is this
//! table in code, and every backend uses it.
//!
//! | operation                     | Created          | Running          | Paused           | Stopped        |
//! |-------------------------------|------------------|------------------|------------------|----------------|
//! | `start`                       | → Running        | InvalidState     | InvalidState     | InvalidState   |
//! | `pause`                       | InvalidState     | → Paused         | InvalidState     | InvalidState   |
//! | `resume`                      | InvalidState     | InvalidState     | → Running        | InvalidState   |
//! | `stop`                        | → Stopped        | → Stopped        | → Stopped        | Ok, no change  |
//! | `save`                        | InvalidState     | InvalidState     | Ok (stays Paused)| InvalidState   |
//! | device add / remove           | cold plug        | hot plug         | InvalidState     | InvalidState   |
//! | memory / processor / CPU group| Ok               | Ok               | InvalidState     | InvalidState   |
//! | vsock `listen`                | Ok               | Ok               | Ok               | InvalidState   |
//! | vsock `connect`               | InvalidState     | Ok               | InvalidState     | InvalidState   |
//! | `wait`                        | blocks           | blocks           | blocks           | returns at once|
//! | `stats`, `state`, `supported` | Ok               | Ok               | Ok               | Ok (frozen)    |
//!
//! The guest itself can move a VM to `Stopped` (power-off, reboot, panic,
//! crash); [`Uvm::wait`] then reports a [`StopReason`] saying which.
//! A `stop` on a `Created` VM reports `Killed`.
//!
//! ## Truthfulness
//!
//! [`Uvm::supported`] answers true for `(resource, operation)` if and only if
//! the manager for the resource is present and the operation works in every
//! state where the table says it is valid. Otherwise the call returns
//! [`Error::NotSupported`] and changes nothing. The `uvm-conformance` crate
//! checks this for any backend. A capability check comes before the state
//! check: an unsupported call is `NotSupported` in every state.
//!
//! ## Devices
//!
//! Cold plug and hot plug are one call: a device added before `start` is part
//! of the boot configuration, one added while running is hot-plugged. Removal
//! is two-phase (see [`Removal`]). Formats are always explicit.
//!
//! ## Writing a backend
//!
//! What the contract asks of every backend alike is written once here, and
//! the backends (`uvm-backend-mock`, `uvm-backend-kvm`) use these pieces
//! instead of keeping their own copies:
//!
//! - [`State::check`]: the lifecycle table above, checked before any work.
//! - [`ExitCell`] (`exit_cell.rs`): the VM's state and exit status. The
//!   first exit wins, the status is visible before the state reads
//!   `Stopped`, any number of callers wait for it, and it tracks the uptime.
//! - [`DeviceTable`] (`device_table.rs`): the devices of one kind with the
//!   two-phase removal rule. A release is begun with a [`ReleaseTicket`],
//!   finished only with that ticket, and handed back as a [`Released`]
//!   whose `complete` drops the device's host resources before it frees
//!   the id; at stop, `finish_all` or `drain` completes what is pending.
//! - Input checks: [`validate`], each device's `validate`, and the checks
//!   across objects such as [`VpmemDevice::check_against`] (a device
//!   against its controller's limits).
//! - [`op_span`]: the tracing span of every operation, carrying the VM id.

mod backend;
pub mod config;
mod config_problem;
mod device_table;
mod devices;
mod error;
mod exit;
mod exit_cell;
mod guest_os;
mod lifecycle;
mod mac;
mod managers;
mod parse;
mod probe;
mod registry;
mod removal;
mod resource;
mod state;
mod stats;
mod uvm;
pub mod validate;
mod vpmem;

pub use backend::{Backend, Capabilities};
pub use config::{BootDevices, ConsoleSink, UvmConfig, UvmConfigBuilder};
pub use config_problem::ConfigProblem;
pub use device_table::{DeviceTable, Drained, ReleaseTicket, Released};
pub use devices::{DiskFormat, Nic, PciDevice, ProcessorLimits, ScsiDisk, ShareKind, SharedFolder};
pub use error::{Error, Result};
pub use exit::{ExitError, ExitStatus, StopReason};
pub use exit_cell::ExitCell;
pub use guest_os::GuestOs;
pub use mac::MacAddress;
pub use managers::{
    CpuGroupManager, MemoryManager, NetworkManager, PciManager, ProcessorManager, ScsiManager,
    SharedFolderManager, VMADDR_PORT_ANY, VmSocketManager, VpmemManager, VsockIo, VsockListener,
    VsockStream, validate_port,
};
pub use probe::{GuestAction, GuestBlockDevice, GuestNic, GuestPmem, GuestProbe, GuestShare};
pub use registry::Registry;
pub use removal::{AbandonedRemoval, Removal, RemovalCompleter};
pub use resource::{Operation, Resource};
pub use state::{Action, State};
pub use stats::{DeviceCounters, MemoryStats, ProcessorStats, Stats};
pub use uvm::{StopMode, Uvm};
pub use vpmem::{ImageFormat, VpmemController, VpmemDevice};

/// Returns the `tracing` span every backend enters for an operation on VM `id`.
pub fn op_span(id: &str, operation: &'static str) -> tracing::Span {
    tracing::info_span!("uvm", vm = id, op = operation)
}
