//! What the boot vCPU starts: a Linux kernel ([`linux`]) or a real-mode test
//! payload ([`payload`]).

pub mod linux;
pub mod payload;
