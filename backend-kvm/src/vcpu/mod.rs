//! vCPU threads: one OS thread per vCPU runs `KVM_RUN` in a loop, routes
//! port and MMIO exits to the buses, and parks or ends when the controller
//! asks ([`control`]; kicked out of `KVM_RUN` by a signal, [`kick`]). Each
//! thread's CPU time is readable while it runs ([`clock`]). A vCPU thread
//! touches only the device registers its exits name, never a queue, a
//! disk or a daemon.

pub mod clock;
pub mod control;
pub mod kick;
pub mod registers;

use std::sync::Arc;

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use tokio::sync::mpsc::UnboundedSender;
use uvm_api::{ExitStatus, StopReason};
use uvm_devices::bus::Bus;
use uvm_devices::thread_guard::run_guarded;

use crate::coalesced::CoalescedWrites;
use crate::control::protocol::VmmEvent;
use crate::exits::{ExitCounters, ExitKind};
use crate::memory::GuestMem;
use clock::VcpuClock;
use control::{RunControl, Want};

/// Everything a vCPU thread needs.
pub struct VcpuContext {
    /// The vCPU's index.
    pub index: u8,
    /// The VM id, for logs.
    pub vm_id: String,
    /// The port I/O bus.
    pub io_bus: Arc<Bus>,
    /// Port writes KVM holds; handed to `io_bus` before each exit's own
    /// access (`None`: KVM holds none).
    pub held: Option<Arc<CoalescedWrites>>,
    /// The MMIO bus.
    pub mmio_bus: Arc<Bus>,
    /// Guest memory, read only to say where a crashed or paused vCPU
    /// stood ([`registers::summary`]).
    pub mem: Arc<GuestMem>,
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

/// The vCPU thread's body. Returns (and reports) when told to stop, when
/// the guest ends its run on this vCPU, or when the thread panics (a VMM
/// bug: the run ends with `VmmError` "vCPU n thread died: ...", see
/// [`uvm_devices::thread_guard`]).
pub fn run(mut vcpu: VcpuFd, ctx: VcpuContext) {
    let _span = tracing::info_span!("vcpu", vm = %ctx.vm_id, index = ctx.index).entered();
    ctx.clock.attach();
    let run_ptr: *mut kvm_run = vcpu.get_kvm_run();
    kick::set_kvm_run(run_ptr);
    let thread = format!("vCPU {}", ctx.index);
    let status = run_guarded(&thread, || run_loop(&mut vcpu, &ctx)).unwrap_or_else(|died| {
        Some(ExitStatus::with_detail(
            StopReason::VmmError,
            died.to_string(),
        ))
    });
    kick::set_kvm_run(std::ptr::null_mut());
    drop(vcpu);
    ctx.clock.detach();
    ctx.control.exited();
    let _ = ctx.events.send(VmmEvent::VcpuEnded {
        index: ctx.index,
        status,
    });
}

/// Hands the port writes KVM holds to the bus, in order.
fn hand_over_held_writes(ctx: &VcpuContext) {
    if let Some(held) = &ctx.held {
        held.drain(&ctx.io_bus, &ctx.counters);
    }
}

/// Most `KVM_RUN` re-entries [`settle`] makes before it parks anyway (a
/// string I/O instruction over many ports takes one per exit).
const MAX_SETTLE_ROUNDS: usize = 4096;

/// Re-enters `KVM_RUN` with `immediate_exit` set until it comes back
/// interrupted, handling the exits met on the way: KVM completes the
/// instruction of a port or MMIO exit only at the next entry, and the
/// vCPU's state is consistent (for a snapshot) only then (KVM API
/// documentation, `KVM_EXIT_IO` / `KVM_EXIT_MMIO`). Gives whether it
/// settled within [`MAX_SETTLE_ROUNDS`], or how the run ended if the guest
/// ended it meanwhile.
fn settle(vcpu: &mut VcpuFd, ctx: &VcpuContext) -> Result<bool, ExitStatus> {
    vcpu.set_kvm_immediate_exit(1);
    let mut outcome = Ok(false);
    for _ in 0..MAX_SETTLE_ROUNDS {
        match vcpu.run() {
            Ok(exit) => {
                hand_over_held_writes(ctx);
                if let Step::End(status) = handle_exit(ctx, exit) {
                    outcome = Err(status);
                    break;
                }
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                outcome = Ok(true);
                break;
            }
            Err(e) => {
                outcome = Err(ExitStatus::with_detail(
                    StopReason::VmmError,
                    format!("vCPU {}: KVM_RUN: {e}", ctx.index),
                ));
                break;
            }
        }
    }
    vcpu.set_kvm_immediate_exit(0);
    // Port writes the last completed instruction made.
    hand_over_held_writes(ctx);
    if matches!(outcome, Ok(false)) {
        tracing::warn!(vm = %ctx.vm_id, vcpu = ctx.index, "vCPU parks with its last exit unsettled");
    }
    outcome
}

/// Runs the vCPU until told to stop (`None`) or the guest ends the run.
fn run_loop(vcpu: &mut VcpuFd, ctx: &VcpuContext) -> Option<ExitStatus> {
    let mut last_work = 0;
    loop {
        match ctx.control.want() {
            Want::Run => {}
            Want::Pause => {
                hand_over_held_writes(ctx);
                let settled = match settle(vcpu, ctx) {
                    Ok(settled) => settled,
                    Err(status) => {
                        tracing::info!(vm = %ctx.vm_id, vcpu = ctx.index, "vCPU ends the run while parking: {status}");
                        return Some(status);
                    }
                };
                ctx.control
                    .note_parked_at(ctx.index, registers::summary(vcpu, &*ctx.mem), settled);
                ctx.control
                    .park(ctx.index, &mut last_work, |work| work(ctx.index, vcpu));
                continue;
            }
            Want::Stop => return None,
        }
        if ctx.index == 0
            && ctx.control.take_crash()
            && let Err(e) = inject_triple_fault(vcpu)
        {
            tracing::error!(vm = %ctx.vm_id, "injecting a triple fault failed: {e}");
        }
        let step = match vcpu.run() {
            Ok(exit) => {
                // Writes KVM held came before this exit's access.
                hand_over_held_writes(ctx);
                handle_exit(ctx, exit)
            }
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
        if let Step::End(mut status) = step {
            if status.reason == StopReason::Crash {
                // Where the guest stood: it left no other trace. (On AMD,
                // KVM resets the vCPU when it intercepts a shutdown, so
                // after a triple fault these are the reset values.)
                let at = registers::summary(vcpu, &*ctx.mem);
                status.detail = Some(match status.detail.take() {
                    Some(detail) => format!("{detail}; {at}"),
                    None => at,
                });
            }
            tracing::info!(vm = %ctx.vm_id, vcpu = ctx.index, "vCPU ends the run: {status}");
            return Some(status);
        }
    }
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
            held: None,
            mmio_bus: Arc::new(Bus::new()),
            mem: Arc::new(GuestMem::from_ranges(&[(vm_memory::GuestAddress(0), 0x1000)]).unwrap()),
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
}
