//! [`RunControl`]: what the controller wants the vCPU threads to do (run,
//! park, stop), and how many of them are parked or gone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// What the controller wants the vCPUs to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Want {
    /// Run the guest.
    Run = 0,
    /// Park outside `KVM_RUN`.
    Pause = 1,
    /// Leave the thread.
    Stop = 2,
}

#[derive(Debug, Default)]
struct Counts {
    parked: usize,
    exited: usize,
}

/// The run state shared by the controller and every vCPU thread.
#[derive(Debug)]
pub struct RunControl {
    want: AtomicU8,
    crash: AtomicBool,
    counts: Mutex<Counts>,
    changed: Condvar,
    /// Where each vCPU stood when it last parked (its index, a register
    /// summary), for diagnosing a guest that stopped answering.
    parked_at: Mutex<BTreeMap<u8, String>>,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            want: AtomicU8::new(Want::Run as u8),
            crash: AtomicBool::new(false),
            counts: Mutex::new(Counts::default()),
            changed: Condvar::new(),
            parked_at: Mutex::new(BTreeMap::new()),
        }
    }
}

impl RunControl {
    /// The wanted state.
    pub fn want(&self) -> Want {
        match self.want.load(Ordering::SeqCst) {
            0 => Want::Run,
            1 => Want::Pause,
            _ => Want::Stop,
        }
    }

    /// Asks vCPU 0 to triple-fault the next time it enters the guest.
    pub fn request_crash(&self) {
        self.crash.store(true, Ordering::SeqCst);
    }

    pub(super) fn take_crash(&self) -> bool {
        self.crash.swap(false, Ordering::SeqCst)
    }

    /// Sets the wanted state and wakes parked threads.
    pub fn set(&self, want: Want) {
        let _guard = self.counts.lock();
        self.want.store(want as u8, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Waits up to `timeout` until `n` threads are parked or gone.
    pub fn wait_parked(&self, n: usize, timeout: Duration) -> bool {
        let mut guard = self.counts.lock();
        let _ = self
            .changed
            .wait_while_for(&mut guard, |c| c.parked + c.exited < n, timeout);
        guard.parked + guard.exited >= n
    }

    /// Records where vCPU `index` stood as it parks.
    pub(super) fn note_parked_at(&self, index: u8, registers: String) {
        self.parked_at.lock().insert(index, registers);
    }

    /// Where each vCPU stood when it last parked, by index (empty before
    /// the first pause).
    pub fn parked_at(&self) -> Vec<(u8, String)> {
        self.parked_at
            .lock()
            .iter()
            .map(|(i, r)| (*i, r.clone()))
            .collect()
    }

    /// Parks the calling vCPU thread while the wanted state is Pause.
    pub(super) fn park(&self) {
        let mut c = self.counts.lock();
        c.parked += 1;
        self.changed.notify_all();
        while self.want() == Want::Pause {
            self.changed.wait(&mut c);
        }
        c.parked -= 1;
    }

    pub(super) fn exited(&self) {
        let mut c = self.counts.lock();
        c.exited += 1;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn park_and_wait_parked() {
        let control = Arc::new(RunControl::default());
        control.set(Want::Pause);
        let c = control.clone();
        let t = std::thread::spawn(move || c.park());
        assert!(control.wait_parked(1, Duration::from_secs(5)));
        control.set(Want::Run);
        t.join().unwrap();
        assert!(!control.wait_parked(1, Duration::from_millis(10)));
    }

    #[test]
    fn the_last_parking_place_of_each_vcpu_is_kept() {
        let control = RunControl::default();
        assert!(control.parked_at().is_empty());
        control.note_parked_at(1, "b".into());
        control.note_parked_at(0, "a".into());
        control.note_parked_at(1, "c".into());
        assert_eq!(
            control.parked_at(),
            vec![(0, "a".to_owned()), (1, "c".to_owned())]
        );
    }
}
