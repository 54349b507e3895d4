//! Real-mode test payloads: a few bytes of 16-bit code copied into guest
//! memory and started in real mode, with every device of a Linux VM present.
//! They let lifecycle tests run on a `/dev/kvm` that cannot boot Linux.

use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use crate::arch::regs;
use crate::error::VmmError;
use crate::memory::GuestMem;

/// A real-mode program: `code` is loaded at `load_addr` (below 64 KiB, CS
/// base 0) and the boot vCPU starts there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealModePayload {
    /// The machine code.
    pub code: Vec<u8>,
    /// Where it is loaded and started.
    pub load_addr: u64,
}

impl RealModePayload {
    /// Copies the code in and points `vcpu` at it.
    pub fn load(&self, mem: &GuestMem, vcpu: &VcpuFd) -> Result<(), VmmError> {
        let end = self.load_addr.saturating_add(self.code.len() as u64);
        if end > 0x1_0000 || self.code.is_empty() {
            return Err(VmmError::Config(format!(
                "a real-mode payload of {} bytes at {:#x} must be non-empty and end below 64 KiB",
                self.code.len(),
                self.load_addr
            )));
        }
        mem.write_slice(&self.code, GuestAddress(self.load_addr))
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        regs::set_real_mode(vcpu, self.load_addr)
    }
}
