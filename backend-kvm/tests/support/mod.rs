//! Helpers shared by the kvm backend's host tests (real-mode guests on this
//! host's `/dev/kvm`).
#![cfg(test)]
#![allow(dead_code)]

pub mod driver;

use std::path::Path;

use uvm_api::UvmConfig;
use uvm_backend_kvm::RealModePayload;

/// Whether `/dev/kvm` is missing; says so on stderr (the test then returns).
pub fn kvm_missing() -> bool {
    if Path::new("/dev/kvm").exists() {
        return false;
    }
    eprintln!("SKIPPED: /dev/kvm not available: /dev/kvm does not exist on this host");
    true
}

/// `jmp $`
pub const SPIN: &[u8] = &[0xeb, 0xfe];

/// One vCPU, 16 MiB.
pub fn config(id: &str) -> UvmConfig {
    UvmConfig::builder(id)
        .vcpus(1)
        .memory_mib(16)
        .build()
        .unwrap()
}

/// A guest that spins at 0x1000.
pub fn spin_payload() -> RealModePayload {
    RealModePayload {
        code: SPIN.to_vec(),
        load_addr: 0x1000,
    }
}
