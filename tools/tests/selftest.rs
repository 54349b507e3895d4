//! Runs the KVM self-test on the host's /dev/kvm (skips loudly when there is none).

use std::path::Path;

use uvm_tools::selftest::{DEFAULT_DEVICE, SelftestError, SelftestOptions, run_selftest};

#[test]
fn selftest_runs_real_mode_code_on_dev_kvm() {
    if !Path::new(DEFAULT_DEVICE).exists() {
        eprintln!("SKIPPED: /dev/kvm not available: {DEFAULT_DEVICE} does not exist on this host");
        return;
    }
    let options = SelftestOptions {
        exits: 100,
        ..SelftestOptions::default()
    };
    match run_selftest(&options) {
        Ok(report) => {
            eprintln!("{report}");
            assert_eq!(report.serial_output, "5\n");
            assert_eq!(report.loop_exits, 100);
        }
        Err(SelftestError::DeviceMissing { path }) => {
            eprintln!(
                "SKIPPED: /dev/kvm not available: {} vanished",
                path.display()
            );
        }
        Err(other) => panic!("the KVM self-test failed on {DEFAULT_DEVICE}: {other}"),
    }
}
