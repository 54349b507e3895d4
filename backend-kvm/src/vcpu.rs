//! vCPU threads: one OS thread per vCPU runs `KVM_RUN` in a loop, routes
//! port and MMIO exits to the buses, and parks or ends when the controller
//! asks.
//!
//! Kicking a thread out of `KVM_RUN`: the controller sets the wanted state
//! ([`RunControl`]) and sends the thread a real-time signal. The signal
//! handler sets `immediate_exit` in that thread's `kvm_run` (through a
//! thread-local pointer), so `KVM_RUN` returns `EINTR` whether the signal
//! lands while the guest runs or just before the thread enters `KVM_RUN`; no
//! kick is lost. The thread clears `immediate_exit` only after such an
//! `EINTR`, then looks at the wanted state.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use parking_lot::{Condvar, Mutex};
use tokio::sync::mpsc::UnboundedSender;
use uvm_api::{ExitStatus, StopReason};
use uvm_devices::bus::Bus;

use crate::exits::{ExitCounters, ExitKind};
use crate::vmm::VmmEvent;

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
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            want: AtomicU8::new(Want::Run as u8),
            crash: AtomicBool::new(false),
            counts: Mutex::new(Counts::default()),
            changed: Condvar::new(),
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

    fn take_crash(&self) -> bool {
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

    /// Parks the calling vCPU thread while the wanted state is Pause.
    fn park(&self) {
        let mut c = self.counts.lock();
        c.parked += 1;
        self.changed.notify_all();
        while self.want() == Want::Pause {
            self.changed.wait(&mut c);
        }
        c.parked -= 1;
    }

    fn exited(&self) {
        let mut c = self.counts.lock();
        c.exited += 1;
        self.changed.notify_all();
    }
}

thread_local! {
    static KVM_RUN_PTR: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Only a const-initialised thread-local Cell is touched: async-signal safe.
    let ptr = KVM_RUN_PTR.with(Cell::get);
    if !ptr.is_null() {
        // SAFETY: the pointer is this thread's own kvm_run mapping, set while
        // the VcpuFd that owns it is alive on this thread and cleared before
        // it is dropped; the signal runs on this same thread.
        unsafe { (*ptr).immediate_exit = 1 };
    }
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

/// Installs the kick handler once per process.
pub fn install_kick_handler() -> Result<(), std::io::Error> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

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
    fn attach(&self) {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is this live thread; id is a valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        let mut s = self.state.lock();
        s.clock = (rc == 0).then_some(id);
    }

    /// Called on the vCPU thread just before it ends.
    fn detach(&self) {
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

/// Everything a vCPU thread needs.
pub struct VcpuContext {
    /// The vCPU's index.
    pub index: u8,
    /// The VM id, for logs.
    pub vm_id: String,
    /// The port I/O bus.
    pub io_bus: Arc<Bus>,
    /// The MMIO bus.
    pub mmio_bus: Arc<Bus>,
    /// Shared run control.
    pub control: Arc<RunControl>,
    /// Exit counters.
    pub counters: Arc<ExitCounters>,
    /// This thread's CPU clock.
    pub clock: Arc<VcpuClock>,
    /// Where the thread reports that it ended.
    pub events: UnboundedSender<VmmEvent>,
}

enum Step {
    Continue,
    End(ExitStatus),
}

fn crash(index: u8, what: impl std::fmt::Display) -> Step {
    Step::End(ExitStatus::with_detail(
        StopReason::Crash,
        format!("vCPU {index}: {what}"),
    ))
}

fn handle_exit(ctx: &VcpuContext, exit: VcpuExit<'_>) -> Step {
    let c = &ctx.counters;
    match exit {
        VcpuExit::IoIn(port, data) => {
            c.count(ExitKind::IoIn);
            if !ctx.io_bus.read(u64::from(port), data) {
                c.count(ExitKind::Unhandled);
            }
        }
        VcpuExit::IoOut(port, data) => {
            c.count(ExitKind::IoOut);
            if !ctx.io_bus.write(u64::from(port), data) {
                c.count(ExitKind::Unhandled);
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            c.count(ExitKind::MmioRead);
            if !ctx.mmio_bus.read(addr, data) {
                c.count(ExitKind::Unhandled);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            c.count(ExitKind::MmioWrite);
            if !ctx.mmio_bus.write(addr, data) {
                c.count(ExitKind::Unhandled);
            }
        }
        VcpuExit::Hlt => c.count(ExitKind::Hlt),
        VcpuExit::Intr => c.count(ExitKind::Interrupted),
        VcpuExit::Shutdown => {
            c.count(ExitKind::Shutdown);
            return crash(ctx.index, "triple fault (KVM_EXIT_SHUTDOWN)");
        }
        VcpuExit::InternalError => {
            c.count(ExitKind::InternalError);
            return crash(ctx.index, "KVM internal error (KVM_EXIT_INTERNAL_ERROR)");
        }
        VcpuExit::FailEntry(reason, cpu) => {
            c.count(ExitKind::InternalError);
            return crash(
                ctx.index,
                format!("VM entry failed (hardware reason {reason:#x}, cpu {cpu})"),
            );
        }
        VcpuExit::SystemEvent(kind, _) => {
            c.count(ExitKind::SystemEvent);
            let reason = match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => StopReason::Shutdown,
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => StopReason::Reboot,
                _ => StopReason::Crash,
            };
            return Step::End(ExitStatus::with_detail(
                reason,
                format!("vCPU {}: KVM system event {kind}", ctx.index),
            ));
        }
        other => {
            c.count(ExitKind::Other);
            return Step::End(ExitStatus::with_detail(
                StopReason::VmmError,
                format!("vCPU {}: unhandled KVM exit {other:?}", ctx.index),
            ));
        }
    }
    Step::Continue
}

/// Makes the vCPU triple-fault on its next entry: an empty IDT and a
/// pending #UD, whose delivery faults (#GP), whose delivery faults (#DF),
/// whose delivery faults: the CPU shuts down and KVM exits with
/// `KVM_EXIT_SHUTDOWN`, exactly as for a triple fault of the guest's own.
pub fn inject_triple_fault(vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
    let mut sregs = vcpu.get_sregs()?;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    vcpu.set_sregs(&sregs)?;
    let mut events = vcpu.get_vcpu_events()?;
    events.exception.injected = 1;
    events.exception.nr = 6;
    events.exception.has_error_code = 0;
    events.exception.error_code = 0;
    vcpu.set_vcpu_events(&events)
}

/// The vCPU thread's body. Returns (and reports) when told to stop or when
/// the guest ends its run on this vCPU.
pub fn run(mut vcpu: VcpuFd, ctx: VcpuContext) {
    let _span = tracing::info_span!("vcpu", vm = %ctx.vm_id, index = ctx.index).entered();
    ctx.clock.attach();
    let run_ptr: *mut kvm_run = vcpu.get_kvm_run();
    KVM_RUN_PTR.with(|p| p.set(run_ptr));
    let status = loop {
        match ctx.control.want() {
            Want::Run => {}
            Want::Pause => {
                ctx.control.park();
                continue;
            }
            Want::Stop => break None,
        }
        if ctx.index == 0
            && ctx.control.take_crash()
            && let Err(e) = inject_triple_fault(&vcpu)
        {
            tracing::error!(vm = %ctx.vm_id, "injecting a triple fault failed: {e}");
        }
        let step = match vcpu.run() {
            Ok(exit) => handle_exit(&ctx, exit),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                ctx.counters.count(ExitKind::Interrupted);
                vcpu.set_kvm_immediate_exit(0);
                Step::Continue
            }
            Err(e) => Step::End(ExitStatus::with_detail(
                StopReason::VmmError,
                format!("vCPU {}: KVM_RUN: {e}", ctx.index),
            )),
        };
        if let Step::End(status) = step {
            tracing::info!(vm = %ctx.vm_id, vcpu = ctx.index, "vCPU ends the run: {status}");
            break Some(status);
        }
    };
    KVM_RUN_PTR.with(|p| p.set(std::ptr::null_mut()));
    drop(vcpu);
    ctx.clock.detach();
    ctx.control.exited();
    let _ = ctx.events.send(VmmEvent::VcpuEnded {
        index: ctx.index,
        status,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> VcpuContext {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        VcpuContext {
            index: 0,
            vm_id: "t".into(),
            io_bus: Arc::new(Bus::new()),
            mmio_bus: Arc::new(Bus::new()),
            control: Arc::new(RunControl::default()),
            counters: Arc::new(ExitCounters::default()),
            clock: Arc::new(VcpuClock::default()),
            events,
        }
    }

    fn reason(exit: VcpuExit<'_>) -> Option<StopReason> {
        match handle_exit(&ctx(), exit) {
            Step::Continue => None,
            Step::End(s) => Some(s.reason),
        }
    }

    #[test]
    fn exits_map_to_stop_reasons() {
        assert_eq!(reason(VcpuExit::Shutdown), Some(StopReason::Crash));
        assert_eq!(reason(VcpuExit::InternalError), Some(StopReason::Crash));
        assert_eq!(reason(VcpuExit::FailEntry(1, 0)), Some(StopReason::Crash));
        assert_eq!(
            reason(VcpuExit::SystemEvent(
                kvm_bindings::KVM_SYSTEM_EVENT_RESET,
                &[]
            )),
            Some(StopReason::Reboot)
        );
        assert_eq!(
            reason(VcpuExit::SystemEvent(
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN,
                &[]
            )),
            Some(StopReason::Shutdown)
        );
        let mut data = [0u8; 1];
        assert_eq!(reason(VcpuExit::IoIn(0x80, &mut data)), None);
        assert_eq!(data, [0xff], "unowned ports read as 0xff");
        assert_eq!(reason(VcpuExit::Hlt), None);
    }

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
}
