//! Two-phase removal: the host side is done when a remove call returns; the
//! device's id stays reserved until the guest has released it.

use std::time::Duration;

use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::resource::Resource;

/// Progress of a removal, shared between the [`Removal`] handles and its [`RemovalCompleter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The guest has not yet released the device.
    Pending,
    /// The guest released the device (or the VM stopped); its id is free again.
    Complete,
}

/// A handle on a removal in progress, returned by every `remove_*` call.
///
/// Dropping it does not cancel the removal. Clones watch the same removal.
#[derive(Debug, Clone)]
#[must_use = "a removal completes in the background; wait on it to know the id is free again"]
pub struct Removal {
    resource: Resource,
    id: String,
    phase: watch::Receiver<Phase>,
}

/// The backend's side of a [`Removal`]: call [`RemovalCompleter::complete`] once
/// the guest has released the device.
///
/// Dropping a completer without completing it makes waiters fail with
/// [`Error::Backend`]: a backend that stops a VM must complete its pending
/// removals, since the device is then gone.
#[derive(Debug)]
pub struct RemovalCompleter {
    tx: watch::Sender<Phase>,
}

impl Removal {
    /// A removal the guest still has to acknowledge, and the completer for the backend.
    pub fn pending(resource: Resource, id: impl Into<String>) -> (Removal, RemovalCompleter) {
        let (tx, rx) = watch::channel(Phase::Pending);
        (
            Removal {
                resource,
                id: id.into(),
                phase: rx,
            },
            RemovalCompleter { tx },
        )
    }

    /// A removal that is already complete (for example a cold unplug before start).
    pub fn completed(resource: Resource, id: impl Into<String>) -> Removal {
        let (removal, completer) = Removal::pending(resource, id);
        completer.complete();
        removal
    }

    /// The kind of device being removed.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// The id of the device being removed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the guest has released the device.
    pub fn is_complete(&self) -> bool {
        *self.phase.borrow() == Phase::Complete
    }

    /// Waits until the guest has released the device, for at most `timeout`.
    ///
    /// Returns [`Error::Timeout`] if it has not by then (the removal goes on),
    /// or [`Error::Backend`] if the backend abandoned it.
    pub async fn wait(&self, timeout: Duration) -> Result<()> {
        let mut phase = self.phase.clone();
        let done = tokio::time::timeout(timeout, phase.wait_for(|p| *p == Phase::Complete)).await;
        match done {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::backend(AbandonedRemoval {
                resource: self.resource,
                id: self.id.clone(),
            })),
            Err(_) => Err(Error::Timeout {
                operation: format!("removal of {} {}", self.resource, self.id),
                after: timeout,
            }),
        }
    }
}

impl RemovalCompleter {
    /// Marks the removal complete and wakes every waiter.
    pub fn complete(self) {
        self.tx.send_replace(Phase::Complete);
    }

    /// Whether any [`Removal`] handle is still watching.
    pub fn is_watched(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The backend dropped a removal without completing it.
#[derive(Debug, thiserror::Error)]
#[error("the backend abandoned the removal of {resource} {id}")]
pub struct AbandonedRemoval {
    /// The kind of device.
    pub resource: Resource,
    /// Its id.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_for_every_waiter() {
        let (removal, completer) = Removal::pending(Resource::Scsi, "0:1");
        let other = removal.clone();
        assert!(!removal.is_complete());
        let waiter = tokio::spawn(async move { other.wait(Duration::from_secs(5)).await });
        completer.complete();
        waiter.await.unwrap().unwrap();
        assert!(removal.is_complete());
        removal.wait(Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn times_out_then_abandons() {
        let (removal, completer) = Removal::pending(Resource::Network, "eth0");
        let err = removal.wait(Duration::from_millis(10)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        drop(completer);
        let err = removal.wait(Duration::from_secs(1)).await.unwrap_err();
        assert!(err.to_string().contains("abandoned"), "{err}");
    }

    #[tokio::test]
    async fn completed_is_complete() {
        let r = Removal::completed(Resource::VPMem, "3");
        assert!(r.is_complete());
        assert_eq!((r.resource(), r.id()), (Resource::VPMem, "3"));
        r.wait(Duration::ZERO).await.unwrap();
    }
}
