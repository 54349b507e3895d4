//! Snapshots of a paused VM (issue 15, under way): what is built so far.
//!
//! - [`state_file`]: the versioned, checksummed state file, and the typed
//!   errors a truncated, damaged, foreign or other-version file gives.
//!
//! `Uvm::save` and `Backend::restore` still answer `ActionNotSupported`
//! on this backend, and its capabilities say so, until the whole VM
//! (vCPUs, irqchip, clock, devices, memory) is captured.

pub mod state_file;
