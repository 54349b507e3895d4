//! Capturing every vCPU of a paused VM, each on its own thread.
//!
//! A vCPU's state is read with ioctls on its fd while it is outside
//! `KVM_RUN`; the thread that runs it is the one that knows when that is.
//! So the capture is handed to the parked vCPU threads as work
//! ([`RunControl::run_parked`]); each has settled its last exit before it
//! parked (see `vcpu::settle`), so what it reads is a consistent state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::vcpu_state::{VcpuState, VcpuStateError, capture};
use crate::vcpu::control::{ParkedWork, RunControl};

/// Why the vCPUs of a paused VM could not all be captured.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Not every vCPU thread ran the capture in time (a thread that has
    /// ended, or one that is not parked).
    #[error("{captured} of {vcpus} vCPUs captured within {timeout:?}")]
    NotParked {
        /// How many were captured.
        captured: usize,
        /// How many the VM has.
        vcpus: usize,
        /// How long the capture waited.
        timeout: Duration,
    },
    /// A vCPU parked with the instruction of its last exit incomplete, so
    /// its state is not consistent.
    #[error("vCPU {0} parked with its last exit unsettled")]
    Unsettled(u8),
    /// A vCPU's state could not be read.
    #[error(transparent)]
    State(#[from] VcpuStateError),
}

/// The state of each of the `vcpus` vCPUs of a paused VM, by index, read
/// on their own threads with the MSRs of `msr_indices`.
pub fn capture_parked(
    control: &RunControl,
    vcpus: usize,
    msr_indices: Arc<Vec<u32>>,
    timeout: Duration,
) -> Result<Vec<VcpuState>, CaptureError> {
    let results: Arc<Mutex<BTreeMap<u8, Result<VcpuState, VcpuStateError>>>> = Arc::default();
    let sink = results.clone();
    let work: ParkedWork = Arc::new(move |index, vcpu| {
        let state = capture(vcpu, index, &msr_indices);
        sink.lock().insert(index, state);
    });
    let all = control.run_parked(work, vcpus, timeout);
    let results = std::mem::take(&mut *results.lock());
    if !all || results.len() < vcpus {
        return Err(CaptureError::NotParked {
            captured: results.len(),
            vcpus,
            timeout,
        });
    }
    if let Some(index) = results.keys().find(|i| !control.settled(**i)) {
        return Err(CaptureError::Unsettled(*index));
    }
    results
        .into_values()
        .map(|r| r.map_err(CaptureError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use kvm_ioctls::Kvm;

    use super::*;
    use crate::snapshot::vcpu_state::msr_indices;
    use crate::vcpu::control::Want;

    #[test]
    fn every_parked_vcpu_is_captured_on_its_own_thread() {
        let Ok(kvm) = Kvm::new() else {
            eprintln!("SKIPPED: /dev/kvm not available");
            return;
        };
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        let vcpus = crate::build::vcpus::create(&kvm, &vm, 2, "capture").unwrap();
        let indices = Arc::new(msr_indices(&kvm).unwrap());
        let control = Arc::new(RunControl::default());
        control.set(Want::Pause);
        let threads: Vec<_> = vcpus
            .into_iter()
            .enumerate()
            .map(|(index, vcpu)| {
                let control = control.clone();
                let index = index as u8;
                let mut regs = vcpu.get_regs().unwrap();
                regs.rbx = 0x1000 + u64::from(index);
                vcpu.set_regs(&regs).unwrap();
                std::thread::spawn(move || {
                    control.park(index, &mut 0, |work| work(index, &vcpu));
                })
            })
            .collect();
        assert!(control.wait_parked(2, Duration::from_secs(5)));
        let states = capture_parked(&control, 2, indices.clone(), Duration::from_secs(5)).unwrap();
        assert_eq!(
            states
                .iter()
                .map(|s| (s.index, s.regs.rbx))
                .collect::<Vec<_>>(),
            vec![(0, 0x1000), (1, 0x1001)]
        );
        // A VM said to have three vCPUs has one that never answers.
        let err = capture_parked(&control, 3, indices, Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::NotParked {
                    captured: 2,
                    vcpus: 3,
                    ..
                }
            ),
            "{err}"
        );
        control.set(Want::Run);
        for t in threads {
            t.join().unwrap();
        }
    }
}
