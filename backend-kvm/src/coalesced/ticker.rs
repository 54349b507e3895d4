//! The ticker: a thread per VM that hands held writes over when no vCPU
//! exit does, every [`TICK_BUSY`] while the guest writes and every
//! [`TICK_IDLE`] after a quiet second. It waits on nothing but its own
//! stop signal and the consumer lock.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use uvm_devices::bus::Bus;

use super::{CoalescedWrites, TICK_BUSY, TICK_IDLE};
use crate::exits::ExitCounters;

/// How long after the last held write the ticker keeps the busy pace.
const BUSY_FOR: Duration = Duration::from_secs(1);

/// What the ticker hands writes to.
struct Target {
    writes: Arc<CoalescedWrites>,
    io_bus: Arc<Bus>,
    counters: Arc<ExitCounters>,
}

impl Target {
    fn drain(&self) -> u32 {
        self.writes.drain(&self.io_bus, &self.counters)
    }
}

/// The running ticker; [`Ticker::stop`] ends it and hands over the rest.
pub struct Ticker {
    target: Arc<Target>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts the ticker of `writes` (no thread when KVM holds no writes
    /// for this VM), named after `vm_id`.
    pub fn start(
        writes: Arc<CoalescedWrites>,
        io_bus: Arc<Bus>,
        counters: Arc<ExitCounters>,
        vm_id: &str,
    ) -> std::io::Result<Ticker> {
        let active = writes.active();
        let target = Arc::new(Target {
            writes,
            io_bus,
            counters,
        });
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = if active {
            let (target, stop) = (target.clone(), stop.clone());
            Some(
                std::thread::Builder::new()
                    .name(format!("held-io-{vm_id}"))
                    .spawn(move || run(&target, &stop))?,
            )
        } else {
            None
        };
        Ok(Ticker {
            target,
            stop,
            thread,
        })
    }

    /// Ends the thread and hands over what is still held (the console's
    /// last bytes); call after the vCPUs stopped.
    pub fn stop(mut self) -> u32 {
        self.end_thread();
        self.target.drain()
    }

    fn end_thread(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.end_thread();
    }
}

fn run(target: &Target, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut last_busy: Option<Instant> = None;
    let mut guard = stopped.lock();
    while !*guard {
        let pace = match last_busy {
            Some(at) if at.elapsed() < BUSY_FOR => TICK_BUSY,
            _ => TICK_IDLE,
        };
        wake.wait_for(&mut guard, pace);
        if *guard {
            break;
        }
        drop(guard);
        target.drain();
        if target.writes.take_recent() {
            last_busy = Some(Instant::now());
        }
        guard = stopped.lock();
    }
}
