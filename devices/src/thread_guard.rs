//! Panics on the VMM's own threads (vCPU threads, device workers) end the
//! VM instead of leaving it `Running` with a dead thread.
//!
//! A panic there is a bug of the VMM (the guest must never be able to cause
//! one, but a bug may let it): the thread's work stops, and whoever waits on
//! it (the control thread, `wait` callers) would wait forever. Run the
//! thread's body under [`run_guarded`] (or start the thread with
//! [`spawn_guarded`]): a panic is caught, logged once with the thread's name
//! and message, and handed to the caller as a [`ThreadDied`], which the
//! thread reports the way it reports any fatal error. The vCPU threads of
//! the kvm backend report it to the control thread, which ends the VM with
//! `StopReason::VmmError` ("vCPU 0 thread died: ...") and wakes every
//! waiter; a device worker should do the same through whatever failure
//! path its VMM gave it (`on_panic` of [`spawn_guarded`]).
//!
//! The state the body used may be half-updated after the panic: the thread
//! must only report and end, never carry on with it.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

/// A guarded thread body panicked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{thread} thread died: {message}")]
pub struct ThreadDied {
    /// The thread's name in logs ("vCPU 0", "net-rx eth0").
    pub thread: String,
    /// The panic's message.
    pub message: String,
}

/// The message of a panic payload (a `&str` or `String`; otherwise a
/// placeholder).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `body` for the thread `thread`; a panic in it is caught, logged and
/// returned as [`ThreadDied`].
pub fn run_guarded<T>(thread: &str, body: impl FnOnce() -> T) -> Result<T, ThreadDied> {
    // Unwind safety: after a panic the caller only reports it (see the
    // module docs), so no broken invariant of the body's state is observed.
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| {
        let died = ThreadDied {
            thread: thread.to_owned(),
            message: panic_message(payload.as_ref()),
        };
        tracing::error!("{died}");
        died
    })
}

/// Spawns the OS thread `name` running `body` under [`run_guarded`]; if the
/// body panics, `on_panic` runs on that thread with what died (report it to
/// the VMM there: the VM must end).
pub fn spawn_guarded<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
    on_panic: impl FnOnce(ThreadDied) + Send + 'static,
) -> std::io::Result<JoinHandle<Option<T>>> {
    let thread = name.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || match run_guarded(&thread, body) {
            Ok(value) => Some(value),
            Err(died) => {
                on_panic(died);
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_panic_is_caught_and_reported_with_its_message() {
        assert_eq!(run_guarded("t", || 7), Ok(7));
        let died = run_guarded("vCPU 1", || -> u8 { panic!("boom {}", 42) }).unwrap_err();
        assert_eq!(died.to_string(), "vCPU 1 thread died: boom 42");
        let died = run_guarded("w", || std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(died.message, "a panic without a message");
    }

    #[test]
    fn a_spawned_worker_reports_its_panic() {
        let (tx, rx) = mpsc::channel();
        let handle = spawn_guarded(
            "worker".into(),
            || -> () { panic!("worker bug") },
            move |died| tx.send(died).unwrap(),
        )
        .unwrap();
        assert_eq!(handle.join().unwrap(), None);
        let died = rx.recv().unwrap();
        assert_eq!(died.thread, "worker");
        assert_eq!(died.message, "worker bug");
        let ok = spawn_guarded("fine".into(), || 3, |_| {}).unwrap();
        assert_eq!(ok.join().unwrap(), Some(3));
    }
}
