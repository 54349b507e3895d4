//! The device worker: one thread per activated virtio device that serves
//! its queue notifications, so that a vCPU thread only ever handles
//! register and configuration accesses.
//!
//! Each queue the driver enabled gets an eventfd (its *kick*). The VMM ties
//! the kick to the queue's notification address with `KVM_IOEVENTFD`
//! ([`crate::ioevent`]), so a guest notification wakes the worker without
//! an exit to user space; a notification that still arrives as an MMIO
//! write (no ioeventfd registered) is turned into a kick by the transport.
//! The worker then calls the device's [`QueueHandler`], which locks only
//! the device's own run state: a disk read of one SCSI controller delays
//! that controller's queues, never a vCPU and never another device.
//!
//! A thread per device, not one event loop for all (rust-vmm's
//! `event-manager`): the handlers block on their backends (a `pread` of a
//! disk image, an `fdatasync` of a pmem image), and one shared loop would
//! let a slow disk stall every NIC and socket of the VM. A VM has at most
//! 32 PCI slots, so the thread count stays small and bounded.
//!
//! | call | what the worker does |
//! |------|----------------------|
//! | [`QueueWorker::pause`] | returns once no handler runs; kicks that arrive meanwhile are kept, nothing is processed and no guest memory written |
//! | [`QueueWorker::resume`] | serves the kept kicks, in queue order, then goes on |
//! | [`QueueWorker::request_stop`] | asks the thread to end after the handler that runs, and returns at once |
//! | [`QueueWorker::stop`] (and drop) | ends and joins the thread (a handler that runs is finished first) |
//!
//! A handler error breaks the device (DEVICE_NEEDS_RESET through
//! [`VirtioInterrupt::set_needs_reset`]); a handler panic does too, ends
//! the worker and is reported through the optional [`PanicHook`], with
//! which the VMM ends the VM.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{QueueHandler, VirtioInterrupt};

/// Told the reason when a worker thread panicked.
pub type PanicHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Where a worker adds the queue notifications (kicks) it received: the
/// guest's notification writes, mostly exits of the vCPU that KVM handled
/// in the kernel through an ioeventfd (several may arrive as one
/// wake-up), plus any that reached the VMM as an MMIO write
/// ([`QueueWorker::notify`], also counted as that exit). Shared by the
/// devices of a VM so that the VMM can report them.
pub type KickCount = Arc<AtomicU64>;

/// Epoll token of the wake eventfd (queue kicks use the queue index).
const WAKE: u64 = u64::MAX;

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// An eventfd or the epoll instance could not be made or registered.
    #[error("device worker {what}: {source}")]
    Fd {
        /// What was being made.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The thread could not be spawned.
    #[error("device worker thread: {0}")]
    Thread(#[source] std::io::Error),
}

fn fd_error(what: &'static str) -> impl Fn(std::io::Error) -> WorkerError {
    move |source| WorkerError::Fd { what, source }
}

#[derive(Default)]
struct GateState {
    paused: bool,
    busy: bool,
    stop: bool,
    /// Kicked queues not served yet (kept while paused).
    deferred: BTreeSet<u16>,
}

/// What the worker and its owner share: the pause and stop state.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    idle: Condvar,
}

/// A running device worker. See the [module documentation](self).
pub struct QueueWorker {
    name: String,
    kicks: Vec<Option<Arc<EventFd>>>,
    wake: Arc<EventFd>,
    gate: Arc<Gate>,
    thread: Option<JoinHandle<()>>,
}

impl QueueWorker {
    /// Starts thread `name` serving the queues whose entry in `enabled` is
    /// true through `handler`; it starts paused if `paused`, and adds the
    /// kicks it receives to `kick_count`.
    pub fn spawn(
        name: &str,
        enabled: &[bool],
        handler: Arc<dyn QueueHandler>,
        interrupt: Arc<dyn VirtioInterrupt>,
        paused: bool,
        on_panic: Option<PanicHook>,
        kick_count: KickCount,
    ) -> Result<Self, WorkerError> {
        let epoll = Epoll::new().map_err(fd_error("epoll instance"))?;
        let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(fd_error("wake eventfd"))?);
        epoll
            .ctl(
                ControlOperation::Add,
                wake.as_raw_fd(),
                EpollEvent::new(EventSet::IN, WAKE),
            )
            .map_err(fd_error("epoll registration"))?;
        let mut kicks = Vec::with_capacity(enabled.len());
        for (queue, on) in enabled.iter().enumerate() {
            if !on {
                kicks.push(None);
                continue;
            }
            let kick =
                Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(fd_error("kick eventfd"))?);
            epoll
                .ctl(
                    ControlOperation::Add,
                    kick.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, queue as u64),
                )
                .map_err(fd_error("epoll registration"))?;
            kicks.push(Some(kick));
        }
        let gate = Arc::new(Gate::default());
        gate.state.lock().paused = paused;
        let body = WorkerBody {
            epoll,
            kicks: kicks.clone(),
            wake: wake.clone(),
            gate: gate.clone(),
            handler,
            interrupt,
            on_panic,
            kick_count,
            name: name.to_owned(),
        };
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body.run())
            .map_err(WorkerError::Thread)?;
        tracing::debug!(worker = name, "device worker started");
        Ok(QueueWorker {
            name: name.to_owned(),
            kicks,
            wake,
            gate,
            thread: Some(thread),
        })
    }

    /// The kick eventfd of `queue`, if the driver enabled it (for the
    /// ioeventfd registration).
    pub fn kick(&self, queue: u16) -> Option<&EventFd> {
        self.kicks
            .get(usize::from(queue))
            .and_then(Option::as_deref)
    }

    /// The queues with a kick, ascending.
    pub fn kicked_queues(&self) -> impl Iterator<Item = u16> + '_ {
        self.kicks
            .iter()
            .enumerate()
            .filter(|(_, k)| k.is_some())
            .map(|(q, _)| q as u16)
    }

    /// A notification that arrived as an MMIO write: kicks `queue`. A queue
    /// the driver did not enable is ignored.
    pub fn notify(&self, queue: u16) {
        match self.kick(queue) {
            Some(kick) => {
                // Only a saturated counter fails, and then a kick is pending.
                if let Err(error) = kick.write(1) {
                    tracing::debug!(worker = %self.name, queue, %error, "kick not written");
                }
            }
            None => {
                tracing::debug!(worker = %self.name, queue, "notification for a queue that is not enabled")
            }
        }
    }

    /// Quiesces the worker: returns once no handler runs; from then on
    /// nothing is processed until [`QueueWorker::resume`].
    pub fn pause(&self) {
        let mut state = self.gate.state.lock();
        state.paused = true;
        while state.busy {
            self.gate.idle.wait(&mut state);
        }
    }

    /// Ends a pause: the kicks kept meanwhile are served now.
    pub fn resume(&self) {
        self.gate.state.lock().paused = false;
        self.wake_thread();
    }

    /// Whether the worker thread has ended (stopped, or a handler panicked).
    pub fn has_ended(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Tells the thread to end after the handler that runs, without
    /// waiting ([`QueueWorker::has_ended`] says when it has).
    pub fn request_stop(&self) {
        self.gate.state.lock().stop = true;
        self.wake_thread();
    }

    /// Ends the thread and waits for it (a running handler finishes first).
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.request_stop();
        if thread.join().is_err() {
            tracing::error!(worker = %self.name, "device worker ended in a panic");
        }
        tracing::debug!(worker = %self.name, "device worker stopped");
    }

    fn wake_thread(&self) {
        if let Err(error) = self.wake.write(1) {
            tracing::debug!(worker = %self.name, %error, "wake-up not written");
        }
    }
}

impl Drop for QueueWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The worker thread's side.
struct WorkerBody {
    epoll: Epoll,
    kicks: Vec<Option<Arc<EventFd>>>,
    wake: Arc<EventFd>,
    gate: Arc<Gate>,
    handler: Arc<dyn QueueHandler>,
    interrupt: Arc<dyn VirtioInterrupt>,
    on_panic: Option<PanicHook>,
    kick_count: KickCount,
    name: String,
}

impl WorkerBody {
    fn run(self) {
        let mut events = vec![EpollEvent::default(); self.kicks.len() + 1];
        loop {
            let ready = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(worker = %self.name, error = %e, "device worker cannot wait; the device stops");
                    self.interrupt
                        .set_needs_reset(&format!("device worker cannot wait: {e}"));
                    return;
                }
            };
            let mut kicked = BTreeSet::new();
            for event in events.iter().take(ready) {
                let token = event.data();
                if token == WAKE {
                    // Reading resets the counter; a failure means it was 0.
                    let _ = self.wake.read();
                    continue;
                }
                if let Some(Some(kick)) = self.kicks.get(token as usize) {
                    // The value read is the number of kicks since the last
                    // read; a failure means there was none.
                    if let Ok(n) = kick.read() {
                        self.kick_count.fetch_add(n, Ordering::Relaxed);
                    }
                    kicked.insert(token as u16);
                }
            }
            let queues = {
                let mut state = self.gate.state.lock();
                if state.stop {
                    return;
                }
                state.deferred.append(&mut kicked);
                if state.paused || state.deferred.is_empty() {
                    continue;
                }
                state.busy = true;
                std::mem::take(&mut state.deferred)
            };
            let served = std::panic::catch_unwind(AssertUnwindSafe(|| self.serve(&queues)));
            let mut state = self.gate.state.lock();
            state.busy = false;
            self.gate.idle.notify_all();
            if let Err(panic) = served {
                drop(state);
                self.panicked(panic.as_ref());
                return;
            }
        }
    }

    fn serve(&self, queues: &BTreeSet<u16>) {
        for &queue in queues {
            if let Err(e) = self.handler.handle_queue(queue) {
                self.interrupt.set_needs_reset(&e.to_string());
            }
        }
    }

    fn panicked(&self, panic: &(dyn std::any::Any + Send)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        let reason = format!("device worker {} panicked: {message}", self.name);
        tracing::error!(worker = %self.name, "{reason}");
        self.interrupt.set_needs_reset(&reason);
        if let Some(hook) = &self.on_panic {
            hook(&reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::virtio::DeviceError;

    #[derive(Default)]
    struct Recorder {
        served: Mutex<Vec<u16>>,
        hold: Mutex<()>,
        fail: AtomicBool,
        panic: AtomicBool,
    }

    impl QueueHandler for Recorder {
        fn handle_queue(&self, queue: u16) -> Result<(), DeviceError> {
            let _held = self.hold.lock();
            if self.panic.load(Ordering::SeqCst) {
                panic!("handler bug");
            }
            self.served.lock().push(queue);
            if self.fail.load(Ordering::SeqCst) {
                return Err(DeviceError::NoSuchQueue(queue));
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct Broken {
        reasons: Mutex<Vec<String>>,
        signals: AtomicUsize,
    }

    impl VirtioInterrupt for Broken {
        fn signal_queue(&self, _queue: u16) {
            self.signals.fetch_add(1, Ordering::SeqCst);
        }
        fn signal_config(&self) {}
        fn set_needs_reset(&self, reason: &str) {
            self.reasons.lock().push(reason.to_owned());
        }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn worker(
        handler: &Arc<Recorder>,
        irq: &Arc<Broken>,
        paused: bool,
        hook: Option<PanicHook>,
    ) -> QueueWorker {
        QueueWorker::spawn(
            "test-worker",
            &[true, false, true],
            handler.clone(),
            irq.clone(),
            paused,
            hook,
            KickCount::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_kick_is_served_on_the_worker_thread() {
        let handler = Arc::new(Recorder::default());
        let irq = Arc::new(Broken::default());
        let w = worker(&handler, &irq, false, None);
        assert!(w.kick(1).is_none(), "a disabled queue has no kick");
        assert_eq!(w.kicked_queues().collect::<Vec<_>>(), vec![0, 2]);
        w.kick(2).unwrap().write(1).unwrap();
        wait_for("queue 2 served", || handler.served.lock().contains(&2));
        w.notify(0);
        wait_for("queue 0 served", || handler.served.lock().contains(&0));
        w.notify(1);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!handler.served.lock().contains(&1));
    }

    #[test]
    fn kicks_are_counted_however_many_one_wake_up_brings() {
        let handler = Arc::new(Recorder::default());
        let irq = Arc::new(Broken::default());
        let count = KickCount::default();
        let w = QueueWorker::spawn(
            "count-worker",
            &[true],
            handler.clone(),
            irq,
            true,
            None,
            count.clone(),
        )
        .unwrap();
        // Paused: three kicks are taken (one read or several) and kept.
        let kick = w.kick(0).unwrap();
        kick.write(1).unwrap();
        kick.write(1).unwrap();
        kick.write(1).unwrap();
        w.resume();
        wait_for("queue 0 served", || handler.served.lock().contains(&0));
        wait_for("three kicks counted", || count.load(Ordering::Relaxed) == 3);
        w.notify(0);
        wait_for("four kicks counted", || count.load(Ordering::Relaxed) == 4);
    }

    #[test]
    fn nothing_is_served_while_paused_and_kept_kicks_run_at_resume() {
        let handler = Arc::new(Recorder::default());
        let irq = Arc::new(Broken::default());
        let w = worker(&handler, &irq, false, None);
        w.pause();
        w.notify(2);
        w.notify(0);
        std::thread::sleep(Duration::from_millis(50));
        assert!(handler.served.lock().is_empty(), "served while paused");
        w.resume();
        wait_for("kept kicks served", || handler.served.lock().len() == 2);
        assert_eq!(*handler.served.lock(), vec![0, 2]);
    }

    #[test]
    fn pause_waits_for_the_running_handler() {
        let handler = Arc::new(Recorder::default());
        let irq = Arc::new(Broken::default());
        let w = worker(&handler, &irq, false, None);
        let held = handler.hold.lock();
        w.notify(0);
        std::thread::sleep(Duration::from_millis(30));
        let paused = Arc::new(AtomicBool::new(false));
        std::thread::scope(|s| {
            s.spawn(|| {
                w.pause();
                paused.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !paused.load(Ordering::SeqCst),
                "pause returned while a handler ran"
            );
            drop(held);
        });
        assert!(paused.load(Ordering::SeqCst));
        assert_eq!(*handler.served.lock(), vec![0]);
    }

    #[test]
    fn a_worker_started_paused_waits_for_resume() {
        let handler = Arc::new(Recorder::default());
        let irq = Arc::new(Broken::default());
        let w = worker(&handler, &irq, true, None);
        w.notify(0);
        std::thread::sleep(Duration::from_millis(30));
        assert!(handler.served.lock().is_empty());
        w.resume();
        wait_for("served after resume", || !handler.served.lock().is_empty());
    }

    #[test]
    fn a_handler_error_breaks_the_device() {
        let handler = Arc::new(Recorder::default());
        handler.fail.store(true, Ordering::SeqCst);
        let irq = Arc::new(Broken::default());
        let w = worker(&handler, &irq, false, None);
        w.notify(0);
        wait_for("device broken", || !irq.reasons.lock().is_empty());
    }

    #[test]
    fn a_handler_panic_ends_the_worker_and_tells_the_hook() {
        let handler = Arc::new(Recorder::default());
        handler.panic.store(true, Ordering::SeqCst);
        let irq = Arc::new(Broken::default());
        let told = Arc::new(Mutex::new(Vec::<String>::new()));
        let hook_told = told.clone();
        let hook: PanicHook = Arc::new(move |reason| hook_told.lock().push(reason.to_owned()));
        let w = worker(&handler, &irq, false, Some(hook));
        w.notify(0);
        wait_for("worker ended", || w.has_ended());
        assert!(told.lock()[0].contains("handler bug"), "{:?}", told.lock());
        assert!(irq.reasons.lock()[0].contains("panicked"));
        // Pause of an ended worker does not hang.
        w.pause();
    }

    #[test]
    fn stop_joins_the_thread() {
        let handler = Arc::new(Recorder::default());
        let irq = Arc::new(Broken::default());
        let mut w = worker(&handler, &irq, false, None);
        w.stop();
        assert!(w.has_ended());
        w.stop();
    }
}
