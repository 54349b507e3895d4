//! What the self-test measured, printed one line per step.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::guest::SERIAL_PORT;

/// What the self-test measured. `Display` prints one line per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelftestReport {
    /// The device that was tested.
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

impl SelftestReport {
    /// The mean cost of one port-I/O exit (exit plus re-entry) in the timed loop.
    pub fn per_exit(&self) -> Duration {
        self.loop_total / u32::from(self.loop_exits.max(1))
    }
}

impl fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const P: &str = "kvm-selftest:";
        writeln!(
            f,
            "{P} device {} (KVM API version {})",
            self.device.display(),
            self.api_version
        )?;
        let steps = [
            ("open device", self.open),
            ("KVM_CREATE_VM", self.create_vm),
            ("guest memory setup", self.setup_memory),
            ("vCPU create + regs", self.create_vcpu),
            ("first KVM_RUN exit", self.first_exit),
        ];
        for (step, took) in steps {
            writeln!(f, "{P} {step:<20} {took:>10.3?}")?;
        }
        writeln!(
            f,
            "{P} {} port I/O exits   {:>10.3?} ({:.3?} per exit)",
            self.loop_exits,
            self.loop_total,
            self.per_exit()
        )?;
        writeln!(
            f,
            "{P} guest wrote {:?} to port {SERIAL_PORT:#x}",
            self.serial_output
        )?;
        write!(f, "{P} {:<20} {:>10.3?}", "total", self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_line_per_step_and_the_mean_exit_cost() {
        let report = SelftestReport {
            device: PathBuf::from("/dev/kvm"),
            api_version: 12,
            open: Duration::from_micros(10),
            create_vm: Duration::from_micros(20),
            setup_memory: Duration::from_micros(30),
            create_vcpu: Duration::from_micros(40),
            first_exit: Duration::from_micros(50),
            loop_total: Duration::from_micros(400),
            loop_exits: 100,
            total: Duration::from_millis(1),
            serial_output: "5\n".into(),
        };
        assert_eq!(report.per_exit(), Duration::from_micros(4));
        let text = report.to_string();
        assert_eq!(text.lines().count(), 9, "{text}");
        assert!(text.lines().all(|l| l.starts_with("kvm-selftest: ")));
        assert!(text.contains("KVM_CREATE_VM"), "{text}");
        assert!(text.contains("100 port I/O exits"), "{text}");
        assert!(text.contains("\"5\\n\" to port 0x3f8"), "{text}");
    }
}
