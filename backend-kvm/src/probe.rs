//! A `/dev/kvm` probe: run a few real-mode instructions and time each step.
//!
//! [`run_probe`] opens the KVM device, creates a VM with 64 KiB of guest
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
//! The probe is a diagnostic, not a backend: it shares nothing with the VMM
//! this crate will hold except the crates it is built on.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// The KVM device the probe opens unless told otherwise.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// How many timed port-I/O exits the probe runs by default.
pub const DEFAULT_EXITS: u16 = 1000;

/// The guest-physical address the probe code is loaded at and starts from.
const CODE_ADDR: u64 = 0x1000;

/// The size of the probe's guest memory (one slot at guest address 0).
const MEM_SIZE: usize = 0x1_0000;

/// The port the probe writes its greeting to (COM1's data register).
const SERIAL_PORT: u16 = 0x3f8;

/// The port the timed loop writes to (the POST diagnostic port).
const LOOP_PORT: u16 = 0x80;

/// What to probe and how hard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The KVM device node, normally [`DEFAULT_DEVICE`].
    pub device: PathBuf,
    /// How many port-I/O exits the timed loop makes (at least 1).
    pub exits: u16,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            device: PathBuf::from(DEFAULT_DEVICE),
            exits: DEFAULT_EXITS,
        }
    }
}

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The KVM device node does not exist (the caller may want to skip).
    #[error("{path} does not exist")]
    DeviceMissing {
        /// The device path that was looked for.
        path: PathBuf,
    },
    /// The options make no sense (for example zero exits).
    #[error("invalid probe options: {0}")]
    InvalidOptions(String),
    /// A KVM ioctl (or opening the device) failed.
    #[error("{step}: {source}")]
    Kvm {
        /// The step that failed, such as "KVM_CREATE_VM".
        step: &'static str,
        /// The errno the kernel returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Mapping the guest memory in this process failed.
    #[error("mmap of {size} bytes of guest memory: {source}")]
    Mmap {
        /// The requested size in bytes.
        size: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The vCPU exited in a way the probe code never asks for.
    #[error("unexpected vCPU exit after {exits} exits: {detail}")]
    UnexpectedExit {
        /// How many exits had been handled before this one.
        exits: u64,
        /// The exit, as `Debug` text.
        detail: String,
    },
    /// The guest halted, but its port writes were not the expected ones.
    #[error("guest output mismatch: {0}")]
    WrongOutput(String),
}

/// What the probe measured. `Display` prints one line per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The device that was probed.
    pub device: PathBuf,
    /// `KVM_GET_API_VERSION` (12 on every Linux since 2.6.22).
    pub api_version: i32,
    /// Opening the device.
    pub open: Duration,
    /// `KVM_CREATE_VM`.
    pub create_vm: Duration,
    /// mmap of the guest memory, copying the code in, `KVM_SET_USER_MEMORY_REGION`.
    pub setup_memory: Duration,
    /// `KVM_CREATE_VCPU` plus setting the real-mode registers.
    pub create_vcpu: Duration,
    /// The first `KVM_RUN` until the first exit (the first serial write).
    pub first_exit: Duration,
    /// The timed loop: `loop_exits` exits on port 0x80.
    pub loop_total: Duration,
    /// How many exits the timed loop made.
    pub loop_exits: u16,
    /// Everything from opening the device to the halt.
    pub total: Duration,
    /// What the guest wrote to port 0x3f8.
    pub serial_output: String,
}

impl ProbeReport {
    /// The mean cost of one port-I/O exit (exit plus re-entry) in the timed loop.
    pub fn per_exit(&self) -> Duration {
        self.loop_total / u32::from(self.loop_exits.max(1))
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kvm-probe: device {} (KVM API version {})",
            self.device.display(),
            self.api_version
        )?;
        writeln!(f, "kvm-probe: open device          {:>10.3?}", self.open)?;
        writeln!(
            f,
            "kvm-probe: KVM_CREATE_VM        {:>10.3?}",
            self.create_vm
        )?;
        writeln!(
            f,
            "kvm-probe: guest memory setup   {:>10.3?}",
            self.setup_memory
        )?;
        writeln!(
            f,
            "kvm-probe: vCPU create + regs   {:>10.3?}",
            self.create_vcpu
        )?;
        writeln!(
            f,
            "kvm-probe: first KVM_RUN exit   {:>10.3?}",
            self.first_exit
        )?;
        writeln!(
            f,
            "kvm-probe: {} port I/O exits   {:>10.3?} ({:.3?} per exit)",
            self.loop_exits,
            self.loop_total,
            self.per_exit()
        )?;
        writeln!(
            f,
            "kvm-probe: guest wrote {:?} to port {SERIAL_PORT:#x}",
            self.serial_output
        )?;
        write!(f, "kvm-probe: total                {:>10.3?}", self.total)
    }
}

/// The probe's guest code for a loop of `exits` port writes (see the module docs).
pub fn guest_code(exits: u16) -> Vec<u8> {
    let [lo, hi] = exits.to_le_bytes();
    let [serial_lo, serial_hi] = SERIAL_PORT.to_le_bytes();
    let [loop_lo, loop_hi] = LOOP_PORT.to_le_bytes();
    vec![
        0xba, serial_lo, serial_hi, // mov dx, 0x3f8
        0x00, 0xd8, // add al, bl
        0x04, b'0', // add al, '0'
        0xee, // out dx, al
        0xb0, b'\n', // mov al, '\n'
        0xee,  // out dx, al
        0xb9, lo, hi, // mov cx, exits
        0xba, loop_lo, loop_hi, // mov dx, 0x80
        0xee,    // again: out dx, al
        0xe2, 0xfd, // loop again
        0xf4, // hlt
    ]
}

/// Anonymous, page-aligned host memory backing the guest; unmapped on drop.
struct GuestMemory {
    ptr: *mut u8,
    size: usize,
}

impl GuestMemory {
    fn new(size: usize) -> Result<Self, ProbeError> {
        // SAFETY: an anonymous private mapping with no address hint touches no
        // existing memory; the result is checked against MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ProbeError::Mmap {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            ptr: ptr.cast(),
            size,
        })
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), ProbeError> {
        let end = offset
            .checked_add(bytes.len())
            .filter(|end| *end <= self.size);
        if end.is_none() {
            return Err(ProbeError::InvalidOptions(format!(
                "{} bytes at {offset:#x} do not fit in {} bytes of guest memory",
                bytes.len(),
                self.size
            )));
        }
        // SAFETY: the range [offset, offset + len) was checked to lie inside
        // the mapping, which this struct owns, and `bytes` cannot overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len());
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/size are exactly what mmap returned, and nothing uses the
        // mapping after drop (the VM that referenced it is dropped first).
        unsafe {
            libc::munmap(self.ptr.cast(), self.size);
        }
    }
}

fn kvm_err(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ProbeError {
    move |source| ProbeError::Kvm { step, source }
}

fn open_kvm(device: &Path) -> Result<Kvm, ProbeError> {
    if !device.exists() {
        return Err(ProbeError::DeviceMissing {
            path: device.to_path_buf(),
        });
    }
    let path = CString::new(device.as_os_str().as_encoded_bytes()).map_err(|_| {
        ProbeError::InvalidOptions(format!("{} contains a NUL byte", device.display()))
    })?;
    Kvm::new_with_path(&path).map_err(kvm_err("open"))
}

/// Runs the probe described in the module docs and returns its timings.
///
/// Fails with [`ProbeError::DeviceMissing`] when the device node does not
/// exist, so a test can tell "no KVM here" from "KVM is broken".
pub fn run_probe(options: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    if options.exits == 0 {
        return Err(ProbeError::InvalidOptions(
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
        .map_err(|_| ProbeError::InvalidOptions("code address does not fit usize".into()))?;
    memory.write(code_offset, &code)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: memory.ptr as u64,
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
                return Err(ProbeError::UnexpectedExit {
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
        return Err(ProbeError::WrongOutput(format!(
            "port {SERIAL_PORT:#x} got {serial_output:?}, expected \"5\\n\""
        )));
    }
    if loop_exits != options.exits {
        return Err(ProbeError::WrongOutput(format!(
            "port {LOOP_PORT:#x} got {loop_exits} writes, expected {}",
            options.exits
        )));
    }
    Ok(ProbeReport {
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
    fn guest_code_loop_jumps_back_to_the_out() {
        let code = guest_code(7);
        assert_eq!(&code[11..14], &[0xb9, 7, 0]);
        // `loop` is at offset 18; its rel8 (-3) lands on the `out` at 17.
        assert_eq!(code[17], 0xee);
        assert_eq!(&code[18..20], &[0xe2, 0xfd]);
        assert_eq!(code.last(), Some(&0xf4));
    }

    #[test]
    fn missing_device_is_reported_as_such() {
        let options = ProbeOptions {
            device: PathBuf::from("/nonexistent/kvm"),
            exits: 1,
        };
        assert!(matches!(
            run_probe(&options),
            Err(ProbeError::DeviceMissing { .. })
        ));
    }

    #[test]
    fn zero_exits_is_rejected() {
        let options = ProbeOptions {
            device: PathBuf::from(DEFAULT_DEVICE),
            exits: 0,
        };
        assert!(matches!(
            run_probe(&options),
            Err(ProbeError::InvalidOptions(_))
        ));
    }
}
