//! The vhost-user side of a virtio-fs device: the session with the backend,
//! the rings it runs, and their start, stop, pause and restart. Every call
//! here may wait for the backend (within the session's time limit), so the
//! device front ([`super::device::VhostUserFs`]) makes them on its setup
//! thread or the VMM's control thread, never on a vCPU thread.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddressSpace;
use vmm_sys_util::eventfd::EventFd;

use super::FsError;
use super::config::FsConfig;
use super::irq::{IrqThread, new_eventfd};
use super::memory::{host_address, memory_table};
use super::session::{RingConfig, Session};
use crate::quiesce::PauseError;
use crate::virtio::{ActivateContext, GuestMemory};

/// Largest split-ring size (virtio 1.x).
const MAX_QUEUE_SIZE: u16 = 32768;

/// A ring the backend runs, with what restarting it after a pause takes.
struct StartedRing {
    index: usize,
    config: RingConfig,
    /// The ring's call eventfd (the interrupt thread waits on a copy).
    call: EventFd,
}

/// What exists while the device runs.
struct Active {
    /// Kick eventfd per queue; `None` for a queue the driver left disabled.
    kicks: Kicks,
    /// Rings the backend runs (or ran until a pause stopped them).
    started: Vec<StartedRing>,
    /// Forwards the backend's calls as interrupts.
    irq: IrqThread,
}

/// The kick eventfds of the running rings, by queue index.
pub(super) type Kicks = Arc<Vec<Option<EventFd>>>;

/// What the queue handler forwards notifications with; it changes at
/// activation, reset, pause and resume.
#[derive(Default)]
pub(super) struct Forward {
    /// The running rings' kicks; `None` while the device is inactive.
    pub(super) kicks: Option<Kicks>,
    /// Paused: kicks are not forwarded.
    pub(super) paused: bool,
}

/// The backend half of a virtio-fs device: a negotiated session and, while
/// the driver runs the device, the started rings.
///
/// Guest memory must be file-backed and mapped shared (one memfd), or
/// activation fails with [`FsError::AnonymousMemory`].
pub struct FsFrontend {
    session: Session,
    config: FsConfig,
    queue_size: u16,
    active: Option<Active>,
    /// Paused: the backend's rings are stopped and kicks are not forwarded.
    paused: bool,
    forward: Arc<Mutex<Forward>>,
}

impl FsFrontend {
    /// Connects to the backend listening on `socket_path` and negotiates a
    /// share named `tag` (1 to 36 bytes) with one hiprio queue and
    /// `num_request_queues` request queues of at most `queue_size`
    /// entries (a power of two).
    pub fn connect(
        socket_path: &Path,
        tag: &str,
        num_request_queues: u16,
        queue_size: u16,
        timeout: Duration,
    ) -> Result<Self, FsError> {
        let config = FsConfig::new(tag, num_request_queues)?;
        if queue_size == 0 || queue_size > MAX_QUEUE_SIZE || !queue_size.is_power_of_two() {
            return Err(FsError::InvalidQueueSize(queue_size));
        }
        let num_queues = 1 + usize::from(num_request_queues);
        let session = Session::connect(socket_path, num_queues, timeout)?;
        tracing::info!(
            tag,
            socket = %socket_path.display(),
            num_request_queues,
            "virtio-fs device connected to its vhost-user backend"
        );
        Ok(FsFrontend {
            session,
            config,
            queue_size,
            active: None,
            paused: false,
            forward: Arc::default(),
        })
    }

    /// The tag the guest mounts the share by.
    pub fn tag(&self) -> &str {
        self.config.tag()
    }

    /// Whether the device is activated.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Whether the backend hung up while the device was active.
    pub fn backend_disconnected(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.irq.disconnected())
    }

    /// Activates the device with a typed error (the device front's `activate`
    /// runs this on its setup thread and reports a failure through
    /// `set_needs_reset`).
    pub fn try_activate(&mut self, ctx: ActivateContext) -> Result<(), FsError> {
        self.deactivate();
        let want = self.session.num_queues();
        if ctx.queues.len() != want {
            return Err(FsError::QueueCount {
                want,
                got: ctx.queues.len(),
            });
        }
        let mem = ctx.mem.memory();
        // Check everything the guest or the VMM got wrong before the
        // backend hears of it.
        let table = memory_table(&mem)?;
        let rings = ring_configs(&mem, &ctx.queues)?;
        self.session.set_features(ctx.features)?;
        self.session.set_mem_table(&table)?;

        let mut kicks: Vec<Option<EventFd>> = (0..want).map(|_| None).collect();
        let mut calls = Vec::with_capacity(rings.len());
        let mut started = Vec::with_capacity(rings.len());
        for (index, ring) in rings {
            let result = start_ring(&mut self.session, index, &ring).and_then(|(kick, call)| {
                let copy = call.try_clone().map_err(|source| FsError::Fd {
                    what: "a copy of a call eventfd",
                    source,
                })?;
                Ok((kick, call, copy))
            });
            match result {
                Ok((kick, call, copy)) => {
                    if let Some(slot) = kicks.get_mut(index) {
                        *slot = Some(kick);
                    }
                    calls.push((index as u16, copy));
                    started.push(StartedRing {
                        index,
                        config: ring,
                        call,
                    });
                }
                Err(e) => {
                    self.stop_rings(&started);
                    return Err(e);
                }
            }
        }
        let irq = match IrqThread::spawn(calls, self.session.socket_fd(), ctx.interrupt) {
            Ok(irq) => irq,
            Err(e) => {
                self.stop_rings(&started);
                return Err(e);
            }
        };
        tracing::info!(
            tag = self.tag(),
            rings = started.len(),
            "virtio-fs device activated"
        );
        let kicks: Kicks = Arc::new(kicks);
        self.forward.lock().kicks = Some(kicks.clone());
        self.active = Some(Active {
            kicks,
            started,
            irq,
        });
        Ok(())
    }

    /// The handle the queue handler forwards kicks with.
    pub(super) fn forward(&self) -> Arc<Mutex<Forward>> {
        self.forward.clone()
    }

    /// Each queue's maximum size, one entry per queue.
    pub fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.queue_size; self.session.num_queues()]
    }

    /// The virtio features to offer the driver.
    pub fn guest_features(&self) -> u64 {
        self.session.guest_features()
    }

    /// The device configuration (tag and request queue count).
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Kicks every running ring once, so that notifications the driver
    /// sent before its rings started are not lost (a needless kick costs
    /// the backend one look at an unchanged ring).
    pub fn kick_all(&self) {
        let Some(active) = self.active.as_ref() else {
            return;
        };
        for kick in active.kicks.iter().flatten() {
            if let Err(error) = kick.write(1) {
                tracing::debug!(%error, "virtio-fs catch-up kick not written");
            }
        }
    }

    /// Stops the rings and the interrupt thread, if running.
    pub fn deactivate(&mut self) {
        self.forward.lock().kicks = None;
        let Some(active) = self.active.take() else {
            return;
        };
        let Active {
            kicks,
            started,
            irq,
        } = active;
        if irq.disconnected() {
            tracing::debug!("vhost-user backend gone; rings not stopped");
        } else if !self.paused {
            self.stop_rings(&started);
        }
        drop(irq);
        drop(kicks);
        tracing::debug!(tag = self.tag(), "virtio-fs device deactivated");
    }

    /// GET_VRING_BASE on each of `rings` (best effort).
    fn stop_rings(&mut self, rings: &[StartedRing]) {
        for ring in rings {
            match self.session.stop_ring(ring.index) {
                Ok(base) => tracing::debug!(index = ring.index, base, "virtio-fs ring stopped"),
                Err(error) => {
                    tracing::warn!(index = ring.index, %error, "cannot stop a virtio-fs ring");
                }
            }
        }
    }
}

/// The ring addresses of every enabled queue, translated for the backend.
fn ring_configs(
    mem: &GuestMemory,
    queues: &[Option<Queue>],
) -> Result<Vec<(usize, RingConfig)>, FsError> {
    let mut out = Vec::with_capacity(queues.len());
    for (index, queue) in queues.iter().enumerate() {
        let Some(q) = queue else {
            tracing::debug!(index, "virtio-fs queue not enabled by the driver");
            continue;
        };
        let qi = index as u16;
        out.push((
            index,
            RingConfig {
                size: q.size(),
                max_size: q.max_size(),
                desc: host_address(mem, qi, q.desc_table())?,
                avail: host_address(mem, qi, q.avail_ring())?,
                used: host_address(mem, qi, q.used_ring())?,
                base: q.next_avail(),
            },
        ));
    }
    Ok(out)
}

/// Creates the eventfds of ring `index` and starts it; returns (kick, call).
fn start_ring(
    session: &mut Session,
    index: usize,
    ring: &RingConfig,
) -> Result<(EventFd, EventFd), FsError> {
    let kick = new_eventfd("a kick eventfd")?;
    let call = new_eventfd("a call eventfd")?;
    session.start_ring(index, ring, &call, &kick)?;
    Ok((kick, call))
}

impl Drop for FsFrontend {
    fn drop(&mut self) {
        self.deactivate();
    }
}

impl FsFrontend {
    /// Stops every ring the backend runs (GET_VRING_BASE, which the backend
    /// answers once its ring worker is idle): from then on the daemon
    /// neither reads nor writes guest memory. This is what QEMU does to a
    /// vhost-user device when the VM stops.
    pub fn pause(&mut self) -> Result<(), PauseError> {
        if self.paused {
            return Ok(());
        }
        if let Some(active) = self.active.as_mut()
            && !active.irq.disconnected()
        {
            for ring in &mut active.started {
                let base = self
                    .session
                    .stop_ring(ring.index)
                    .map_err(|e| PauseError::Backend {
                        device: format!("virtio-fs {}", self.config.tag()),
                        action: "stop its rings",
                        detail: e.to_string(),
                    })?;
                ring.config.base = u16::try_from(base).unwrap_or(u16::MAX);
                tracing::debug!(
                    index = ring.index,
                    base,
                    "virtio-fs ring stopped for a pause"
                );
            }
        }
        self.paused = true;
        self.forward.lock().paused = true;
        Ok(())
    }

    /// Restarts the stopped rings where the backend left them, with the
    /// same eventfds.
    pub fn resume(&mut self) -> Result<(), PauseError> {
        if !self.paused {
            return Ok(());
        }
        self.paused = false;
        self.forward.lock().paused = false;
        let Some(active) = self.active.as_ref() else {
            return Ok(());
        };
        if active.irq.disconnected() {
            return Ok(());
        }
        // The transport replays the notifications it held meanwhile.
        for ring in &active.started {
            let Some(Some(kick)) = active.kicks.get(ring.index) else {
                continue;
            };
            self.session
                .start_ring(ring.index, &ring.config, &ring.call, kick)
                .map_err(|e| PauseError::Backend {
                    device: format!("virtio-fs {}", self.config.tag()),
                    action: "restart its rings",
                    detail: e.to_string(),
                })?;
        }
        Ok(())
    }
}
