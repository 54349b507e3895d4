//! Kicking a vCPU thread out of `KVM_RUN`: the controller sets the wanted
//! state ([`super::control::RunControl`]) and sends the thread a real-time
//! signal. The signal handler sets `immediate_exit` in that thread's
//! `kvm_run` (through a thread-local pointer), so `KVM_RUN` returns `EINTR`
//! whether the signal lands while the guest runs or just before the thread
//! enters `KVM_RUN`; no kick is lost. The thread clears `immediate_exit`
//! only after such an `EINTR`, then looks at the wanted state.

use std::cell::Cell;
use std::sync::Once;

use kvm_bindings::kvm_run;

thread_local! {
    /// This thread's `kvm_run` while its vCPU runs.
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

/// Points the kick handler of this thread at its vCPU's `kvm_run`
/// (null: no vCPU any more). Call with the pointer before the first
/// `KVM_RUN` and with null before the vCPU is dropped.
pub(super) fn set_kvm_run(ptr: *mut kvm_run) {
    KVM_RUN_PTR.with(|p| p.set(ptr));
}
