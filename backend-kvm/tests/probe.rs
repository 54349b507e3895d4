//! Runs the KVM probe on the host's /dev/kvm (skips loudly when there is none).

use std::path::Path;

use uvm_backend_kvm::probe::{DEFAULT_DEVICE, ProbeError, ProbeOptions, run_probe};

#[test]
fn probe_runs_real_mode_code_on_dev_kvm() {
    if !Path::new(DEFAULT_DEVICE).exists() {
        eprintln!("SKIPPED: /dev/kvm not available: {DEFAULT_DEVICE} does not exist on this host");
        return;
    }
    let options = ProbeOptions {
        exits: 100,
        ..ProbeOptions::default()
    };
    match run_probe(&options) {
        Ok(report) => {
            eprintln!("{report}");
            assert_eq!(report.serial_output, "5\n");
            assert_eq!(report.loop_exits, 100);
        }
        Err(ProbeError::DeviceMissing { path }) => {
            eprintln!(
                "SKIPPED: /dev/kvm not available: {} vanished",
                path.display()
            );
        }
        Err(other) => panic!("the KVM probe failed on {DEFAULT_DEVICE}: {other}"),
    }
}
