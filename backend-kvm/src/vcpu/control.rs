//! [`RunControl`]: what the controller wants the vCPU threads to do (run,
//! park, stop), and how many of them are parked or gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;
use parking_lot::{Condvar, Mutex, MutexGuard};

/// Work for every parked vCPU thread, run on that thread with its index and
/// its vCPU (KVM wants a vCPU's state read by the thread that runs it, and
/// only while it is outside `KVM_RUN`).
pub type ParkedWork = Arc<dyn Fn(u8, &VcpuFd) + Send + Sync>;

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

#[derive(Default)]
struct Counts {
    parked: usize,
    exited: usize,
    /// The work parked threads are asked to run, numbered.
    work: Option<(u64, ParkedWork)>,
    /// The number of the last work handed out (numbers start at 1).
    works: u64,
    /// The vCPUs that have run the current work.
    worked: BTreeSet<u8>,
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counts")
            .field("parked", &self.parked)
            .field("exited", &self.exited)
            .field("work", &self.work.as_ref().map(|(n, _)| n))
            .field("worked", &self.worked)
            .finish()
    }
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
    /// The vCPUs that parked with their last exit's instruction not yet
    /// complete (see `vcpu::settle`): their state is not consistent.
    unsettled: Mutex<BTreeSet<u8>>,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            want: AtomicU8::new(Want::Run as u8),
            crash: AtomicBool::new(false),
            counts: Mutex::new(Counts::default()),
            changed: Condvar::new(),
            parked_at: Mutex::new(BTreeMap::new()),
            unsettled: Mutex::new(BTreeSet::new()),
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

    /// Records where vCPU `index` stood as it parks, and whether its last
    /// exit was settled.
    pub(super) fn note_parked_at(&self, index: u8, registers: String, settled: bool) {
        self.parked_at.lock().insert(index, registers);
        let mut unsettled = self.unsettled.lock();
        if settled {
            unsettled.remove(&index);
        } else {
            unsettled.insert(index);
        }
    }

    /// Whether vCPU `index` parked with its last exit settled (its state
    /// is consistent for a snapshot).
    pub fn settled(&self, index: u8) -> bool {
        !self.unsettled.lock().contains(&index)
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

    /// Parks the calling thread, vCPU `index`, while the wanted state is
    /// Pause, running on it each piece of work [`RunControl::run_parked`]
    /// hands out: `serve` gets the work and runs it with the thread's vCPU.
    /// `last_work` is the number of the last work this thread ran (kept by
    /// the thread across parks, 0 at first).
    pub(crate) fn park(&self, index: u8, last_work: &mut u64, mut serve: impl FnMut(&ParkedWork)) {
        let mut c = self.counts.lock();
        c.parked += 1;
        self.changed.notify_all();
        while self.want() == Want::Pause {
            match c.work.clone() {
                Some((number, work)) if number != *last_work => {
                    *last_work = number;
                    MutexGuard::unlocked(&mut c, || serve(&work));
                    // Counted only for the work still asked for: a caller
                    // that gave up and handed out new work meanwhile is
                    // not told this thread ran its work.
                    if c.work.as_ref().is_some_and(|(now, _)| *now == number) {
                        c.worked.insert(index);
                    }
                    self.changed.notify_all();
                }
                _ => self.changed.wait(&mut c),
            }
        }
        c.parked -= 1;
    }

    /// Runs `work` on each of the `n` vCPU threads of a paused VM (parked,
    /// or parking now) and waits up to `timeout` for all of them; returns
    /// whether all ran it. vCPUs whose thread has ended do not.
    pub fn run_parked(&self, work: ParkedWork, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.counts.lock();
        c.works += 1;
        let number = c.works;
        c.work = Some((number, work));
        c.worked.clear();
        self.changed.notify_all();
        while c.worked.len() < n {
            if self.changed.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        let all = c.worked.len() >= n;
        c.work = None;
        all
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
        let t = std::thread::spawn(move || c.park(0, &mut 0, |_| {}));
        assert!(control.wait_parked(1, Duration::from_secs(5)));
        control.set(Want::Run);
        t.join().unwrap();
        assert!(!control.wait_parked(1, Duration::from_millis(10)));
    }

    #[test]
    fn the_last_parking_place_of_each_vcpu_is_kept() {
        let control = RunControl::default();
        assert!(control.parked_at().is_empty());
        control.note_parked_at(1, "b".into(), true);
        control.note_parked_at(0, "a".into(), false);
        control.note_parked_at(1, "c".into(), true);
        assert!(!control.settled(0) && control.settled(1));
        assert_eq!(
            control.parked_at(),
            vec![(0, "a".to_owned()), (1, "c".to_owned())]
        );
    }
}
