//! The KVM self-test: checks that a `/dev/kvm` runs guest code and times its
//! exits.
//!
//! [`run_selftest`] opens the KVM device, creates a VM with 64 KiB of guest
//! memory and one vCPU in real mode, and runs this guest code at `0x1000`:
//!
//! ```text
//! mov dx, 0x3f8 ; add al, bl ; add al, '0' ; out dx, al   ; writes '5' (al=2, bl=3)
//! mov al, '\n'  ; out dx, al                              ; writes '\n'
//! mov cx, N     ; mov dx, 0x80
//! again: out dx, al ; loop again                          ; N exits on port 0x80
//! hlt
//! ```
//!
//! It checks that port `0x3f8` received `"5\n"`, that port `0x80` was written
//! exactly `N` times, and that the vCPU then halted. Real-mode code is the
//! least a KVM implementation must run, so this works on hosts whose
//! `/dev/kvm` cannot boot Linux (such as `kvm_pvm`) as well as on real
//! VMX/SVM hosts and inside the nested lab.
//!
//! The self-test is a diagnostic, not a backend: it shares nothing with the
//! kvm backend's VMM except the crates both are built on.

mod error;
mod guest;
mod report;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

pub use error::SelftestError;
pub use guest::guest_code;
pub use report::SelftestReport;

use error::kvm_err;
use guest::{CODE_ADDR, GuestMemory, LOOP_PORT, MEM_SIZE, SERIAL_PORT};

/// The KVM device the self-test opens unless told otherwise.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// How many timed port-I/O exits the self-test runs by default.
pub const DEFAULT_EXITS: u16 = 1000;

/// Which device to test and how hard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelftestOptions {
    /// The KVM device node, normally [`DEFAULT_DEVICE`].
    pub device: PathBuf,
    /// How many port-I/O exits the timed loop makes (at least 1).
    pub exits: u16,
}

impl Default for SelftestOptions {
    fn default() -> Self {
        Self {
            device: PathBuf::from(DEFAULT_DEVICE),
            exits: DEFAULT_EXITS,
        }
    }
}

fn open_kvm(device: &Path) -> Result<Kvm, SelftestError> {
    if !device.exists() {
        return Err(SelftestError::DeviceMissing {
            path: device.to_path_buf(),
        });
    }
    let path = CString::new(device.as_os_str().as_encoded_bytes()).map_err(|_| {
        SelftestError::InvalidOptions(format!("{} contains a NUL byte", device.display()))
    })?;
    Kvm::new_with_path(&path).map_err(kvm_err("open"))
}

/// Runs the self-test described in the module docs and returns its timings.
///
/// Fails with [`SelftestError::DeviceMissing`] when the device node does not
/// exist, so a test can tell "no KVM here" from "KVM is broken".
pub fn run_selftest(options: &SelftestOptions) -> Result<SelftestReport, SelftestError> {
    if options.exits == 0 {
        return Err(SelftestError::InvalidOptions(
            "exits must be at least 1".into(),
        ));
    }
    let start = Instant::now();
    let kvm = open_kvm(&options.device)?;
    let api_version = kvm.get_api_version();
    let open = start.elapsed();

    // Declared before the VM so that it is dropped after it.
    let mut memory = GuestMemory::new(MEM_SIZE)?;

    let step = Instant::now();
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    let create_vm = step.elapsed();

    let step = Instant::now();
    let code = guest_code(options.exits);
    let code_offset = usize::try_from(CODE_ADDR)
        .map_err(|_| SelftestError::InvalidOptions("code address does not fit usize".into()))?;
    memory.write(code_offset, &code)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: memory.host_address(),
        flags: 0,
    };
    // SAFETY: the region describes memory this function owns (`memory`),
    // which stays mapped until after `vm` is dropped at the end of this scope.
    unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    let setup_memory = step.elapsed();

    let step = Instant::now();
    let mut vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    let mut regs = vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
    regs.rip = CODE_ADDR;
    regs.rax = 2;
    regs.rbx = 3;
    regs.rflags = 0x2;
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
    let create_vcpu = step.elapsed();

    let mut serial = Vec::new();
    let mut loop_exits: u16 = 0;
    let mut exits: u64 = 0;
    let mut first_exit = None;
    let mut loop_start = None;
    let run_start = Instant::now();
    let loop_total = loop {
        let exit = vcpu.run().map_err(kvm_err("KVM_RUN"))?;
        exits += 1;
        if first_exit.is_none() {
            first_exit = Some(run_start.elapsed());
        }
        match exit {
            VcpuExit::IoOut(SERIAL_PORT, data) => {
                serial.extend_from_slice(data);
                if serial.ends_with(b"\n") {
                    loop_start = Some(Instant::now());
                }
            }
            VcpuExit::IoOut(LOOP_PORT, _) => {
                loop_exits = loop_exits.saturating_add(1);
            }
            VcpuExit::Hlt => {
                break loop_start.map(|s| s.elapsed()).unwrap_or_default();
            }
            other => {
                return Err(SelftestError::UnexpectedExit {
                    exits,
                    detail: format!("{other:?}"),
                });
            }
        }
    };
    let total = start.elapsed();
    drop(vcpu);
    drop(vm);
    drop(memory);

    let serial_output = String::from_utf8_lossy(&serial).into_owned();
    if serial_output != "5\n" {
        return Err(SelftestError::WrongOutput(format!(
            "port {SERIAL_PORT:#x} got {serial_output:?}, expected \"5\\n\""
        )));
    }
    if loop_exits != options.exits {
        return Err(SelftestError::WrongOutput(format!(
            "port {LOOP_PORT:#x} got {loop_exits} writes, expected {}",
            options.exits
        )));
    }
    Ok(SelftestReport {
        device: options.device.clone(),
        api_version,
        open,
        create_vm,
        setup_memory,
        create_vcpu,
        first_exit: first_exit.unwrap_or_default(),
        loop_total,
        loop_exits,
        total,
        serial_output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_reported_as_such() {
        let options = SelftestOptions {
            device: PathBuf::from("/nonexistent/kvm"),
            exits: 1,
        };
        assert!(matches!(
            run_selftest(&options),
            Err(SelftestError::DeviceMissing { .. })
        ));
    }

    #[test]
    fn zero_exits_is_rejected() {
        let options = SelftestOptions {
            device: PathBuf::from(DEFAULT_DEVICE),
            exits: 0,
        };
        assert!(matches!(
            run_selftest(&options),
            Err(SelftestError::InvalidOptions(_))
        ));
    }
}
