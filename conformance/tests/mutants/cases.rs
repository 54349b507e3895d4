//! Every mutant, gathered from one file per area (`resources.rs` holds the
//! memory, processor and CPU group areas).

use crate::Mutant;

#[path = "bad_input.rs"]
pub mod bad_input;
#[path = "cleanup.rs"]
pub mod cleanup;
#[path = "concurrency.rs"]
pub mod concurrency;
#[path = "exit.rs"]
pub mod exit;
#[path = "lifecycle.rs"]
pub mod lifecycle;
#[path = "network.rs"]
pub mod network;
#[path = "pci.rs"]
pub mod pci;
#[path = "resources.rs"]
pub mod resources;
#[path = "scsi.rs"]
pub mod scsi;
#[path = "shares.rs"]
pub mod shares;
#[path = "stats.rs"]
pub mod stats;
#[path = "truthfulness.rs"]
pub mod truthfulness;
#[path = "vpmem.rs"]
pub mod vpmem;
#[path = "vsock.rs"]
pub mod vsock;

/// Every mutant of the self-test.
pub fn all() -> Vec<Mutant> {
    let mut all = Vec::new();
    all.extend(lifecycle::mutants());
    all.extend(exit::mutants());
    all.extend(stats::mutants());
    all.extend(scsi::mutants());
    all.extend(vpmem::mutants());
    all.extend(network::mutants());
    all.extend(shares::mutants());
    all.extend(vsock::mutants());
    all.extend(pci::mutants());
    all.extend(resources::mutants());
    all.extend(truthfulness::mutants());
    all.extend(bad_input::mutants());
    all.extend(concurrency::mutants());
    all.extend(cleanup::mutants());
    all
}
