//! Everything x86-64 about a VM: the guest-physical memory map
//! ([`layout`]), CPUID ([`cpuid`]), boot MSRs ([`msrs`]), register set-up
//! ([`regs`]), the in-kernel PIT ([`pit`]) and what the boot vCPU starts
//! ([`boot`]: Linux direct boot or a real-mode test payload).

pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod msrs;
pub mod pit;
pub mod regs;
