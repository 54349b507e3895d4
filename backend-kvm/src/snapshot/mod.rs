//! Snapshots of a paused VM (issue 15, under way): what is built so far.
//!
//! - [`state_file`]: the versioned, checksummed state file, and the typed
//!   errors a truncated, damaged, foreign or other-version file gives.
//! - [`vcpu_state`]: one vCPU's registers, FPU/XSAVE, XCRs, LAPIC, MSRs,
//!   debug registers, pending events and CPUID, read from a parked vCPU
//!   and put back into a fresh one.
//! - [`vcpu_capture`]: every vCPU of a paused VM captured on its own
//!   thread, after it settled its last exit.
//! - [`vm_state`]: the VM-wide state KVM keeps: both PICs and the IOAPIC,
//!   the PIT and the KVM clock.
//! - [`memory_file`]: guest RAM as a sparse file (zero pages are holes),
//!   mapped back copy-on-write.
//!
//! `Uvm::save` and `Backend::restore` still answer `ActionNotSupported`
//! on this backend, and its capabilities say so, until the whole VM
//! (vCPUs, irqchip, clock, devices, memory) is captured.

pub mod memory_file;
pub mod state_file;
pub mod vcpu_capture;
pub mod vcpu_state;
pub mod vm_state;
