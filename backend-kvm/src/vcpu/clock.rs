//! [`VcpuClock`]: the host CPU time a vCPU thread has used, readable from
//! any thread while it runs and frozen once it ended.

use std::time::Duration;

use parking_lot::Mutex;

/// Host CPU time of one vCPU thread.
#[derive(Debug, Default)]
pub struct VcpuClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    clock: Option<libc::clockid_t>,
    last: Duration,
}

fn read_clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; an invalid clock id gives an error.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

impl VcpuClock {
    /// Called on the vCPU thread when it starts.
    pub(super) fn attach(&self) {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is this live thread; id is a valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        let mut s = self.state.lock();
        s.clock = (rc == 0).then_some(id);
    }

    /// Called on the vCPU thread just before it ends.
    pub(super) fn detach(&self) {
        let mut s = self.state.lock();
        if let Some(t) = read_clock(libc::CLOCK_THREAD_CPUTIME_ID) {
            s.last = t;
        }
        s.clock = None;
    }

    /// CPU time used so far (frozen once the thread has ended).
    pub fn cpu_time(&self) -> Duration {
        let mut s = self.state.lock();
        if let Some(t) = s.clock.and_then(read_clock) {
            s.last = t;
        }
        s.last
    }
}
