//! What the boot vCPU starts: a Linux kernel ([`linux`]) or a real-mode test
//! payload ([`payload`]).

pub mod linux;
pub mod payload;

use kvm_ioctls::VcpuFd;

use crate::arch::regs;
use crate::error::VmmError;
use crate::memory::GuestMem;
use linux::LinuxBoot;
use payload::RealModePayload;

/// What the boot vCPU runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSpec {
    /// A Linux kernel, booted directly.
    Linux(LinuxBoot),
    /// A real-mode test payload.
    Payload(RealModePayload),
}

impl BootSpec {
    /// Loads the image into `mem` (of `mem_bytes`; the ACPI RSDP is at
    /// `rsdp`) and points `boot_vcpu` at its entry.
    pub fn load(
        &self,
        mem: &GuestMem,
        mem_bytes: u64,
        rsdp: u64,
        boot_vcpu: &VcpuFd,
    ) -> Result<(), VmmError> {
        match self {
            BootSpec::Linux(linux) => {
                let entry = linux.load(mem, mem_bytes, rsdp)?;
                regs::write_long_mode_tables(mem)?;
                regs::set_long_mode(boot_vcpu, entry)
            }
            BootSpec::Payload(payload) => payload.load(mem, boot_vcpu),
        }
    }
}
