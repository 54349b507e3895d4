//! The run state every virtio device model keeps around its queues.
//!
//! Between the driver's DRIVER_OK and a reset, a device holds its queues,
//! guest memory and interrupt handle in a [`Running`]. [`Activation`] is
//! the device's whole run state around it:
//!
//! | state      | how it is entered                      | queues processed | guest memory written |
//! |------------|----------------------------------------|------------------|----------------------|
//! | inactive   | creation, driver reset (status 0)      | no (`NotActivated`) | no                |
//! | running    | DRIVER_OK ([`Activation::start`])      | yes              | yes                  |
//! | broken     | the guest misprogrammed a queue ([`Running::fail`]) | no, until the driver resets | no |
//! | paused     | the VMM quiesces the VM ([`crate::quiesce::Pausable`]) | no, until resume | no |
//!
//! Broken follows the virtio 1.x rule for DEVICE_NEEDS_RESET (section
//! 2.1.2): the device tells the driver and stops until it is reset, so a
//! hostile ring costs the host one log line, not a loop. Paused is
//! orthogonal to the rest: a device paused before the driver activates it
//! is still paused once activated, and a resumed device picks up its work
//! where the guest and the host left it (the transport replays the queue
//! notifications that arrived meanwhile; host-side work such as received
//! frames simply waits in its backend).
//!
//! Every device answers the guest's rings through the same helpers:
//! [`Running::process`] runs one pass over its queues, raises the queue's
//! interrupt if any buffer was used, and breaks the device on a
//! [`ProcessError`]; [`drain`] answers every chain of a request queue.

use std::fmt;
use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::GuestAddressSpace;

use super::queue::{QueueError, QueuePosition, QueueSet, add_used, pop_chain, wants_interrupt};
use super::{ActivateContext, DeviceError, GuestMemory, GuestMemoryHandle, VirtioInterrupt};
use crate::snapshot::StateError;

/// Why a pass over a queue stopped: the guest's rings or buffers are
/// unusable, and the device breaks (DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The rings or a descriptor chain are invalid.
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// A chain's buffers could not be read or written.
    #[error("descriptor buffer access failed: {0}")]
    Buffer(#[from] std::io::Error),
    /// The device-writable part of a chain cannot hold the response.
    #[error("response buffer of {have} bytes, {need} needed")]
    ResponseTooSmall {
        /// Writable bytes in the chain.
        have: usize,
        /// Bytes of the response.
        need: usize,
    },
}

impl ProcessError {
    /// A reader or writer over a chain could not be built.
    pub fn chain(e: virtio_queue::Error) -> Self {
        ProcessError::Queue(QueueError::Chain(e))
    }
}

/// What a device holds while the driver runs it: its queues in the shape
/// the device wants (`Q`), guest memory and the interrupt handle.
pub struct Running<Q> {
    /// The device's queues.
    pub queues: Q,
    mem: GuestMemoryHandle,
    interrupt: Arc<dyn VirtioInterrupt>,
    broken: bool,
}

impl<Q> Running<Q> {
    /// Guest memory.
    pub fn memory(&self) -> &GuestMemoryHandle {
        &self.mem
    }

    /// Whether the guest broke the device (it waits for a reset).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Raises the interrupt of `queue`.
    pub fn signal(&self, queue: u16) {
        self.interrupt.signal_queue(queue);
    }

    /// Raises the configuration-change interrupt.
    pub fn signal_config(&self) {
        self.interrupt.signal_config();
    }

    /// The guest broke `what` (a queue's name) with `error`: the device
    /// stops processing and tells the driver (DEVICE_NEEDS_RESET).
    pub fn fail(&mut self, device: &str, what: &str, error: &dyn fmt::Display) {
        crate::log_limited!(
            warn,
            device,
            what,
            "virtio device broken by the guest: {error}"
        );
        self.broken = true;
        self.interrupt
            .set_needs_reset(&format!("{device} {what}: {error}"));
    }

    /// Runs one pass over the queues with `work`, which sets its `used`
    /// argument when it returned a buffer to the driver: then the interrupt
    /// of `queue` is raised (also when the pass ends in an error after some
    /// buffers were used). An error breaks the device and gives `None`.
    /// A broken device does nothing and gives `None`.
    pub fn process<T>(
        &mut self,
        device: &str,
        queue: u16,
        what: &str,
        work: impl FnOnce(&mut Q, &GuestMemory, &mut bool) -> Result<T, ProcessError>,
    ) -> Option<T> {
        if self.broken {
            return None;
        }
        let mem = self.mem.memory();
        let mut used = false;
        let result = work(&mut self.queues, &mem, &mut used);
        if used {
            self.signal(queue);
        }
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.fail(device, what, &e);
                None
            }
        }
    }
}

/// What a snapshot keeps of a running device's run state: whether the
/// guest broke it, and where each of its queues stands (`None` for a queue
/// the driver did not enable).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// The guest broke the device (it waits for a reset).
    pub broken: bool,
    /// Per queue index, its position.
    pub positions: Vec<Option<QueuePosition>>,
}

/// A device's run state: inactive, running (maybe broken), and paused or
/// not. See the [module documentation](self).
pub struct Activation<Q> {
    running: Option<Running<Q>>,
    paused: bool,
}

impl<Q> Default for Activation<Q> {
    fn default() -> Self {
        Activation {
            running: None,
            paused: false,
        }
    }
}

impl<Q> Activation<Q> {
    /// DRIVER_OK: the device runs `queues` (taken out of `ctx`) with the
    /// memory and interrupt handle of `ctx`.
    pub fn start(&mut self, ctx: ActivateContext, queues: Q) {
        self.running = Some(Running {
            queues,
            mem: ctx.mem,
            interrupt: ctx.interrupt,
            broken: false,
        });
    }

    /// The driver reset the device: the queues are dropped.
    pub fn stop(&mut self) -> Option<Running<Q>> {
        self.running.take()
    }

    /// The run state for a snapshot, taken while paused: `None` for a
    /// device the driver has not activated.
    pub fn run_state(&self) -> Result<Option<RunState>, StateError>
    where
        Q: QueueSet,
    {
        if !self.paused {
            return Err(StateError::NotQuiescent("the device is not paused".into()));
        }
        Ok(self.running.as_ref().map(|r| RunState {
            broken: r.broken,
            positions: (0..r.queues.count())
                .map(|i| r.queues.queue(i).map(QueuePosition::of))
                .collect(),
        }))
    }

    /// Puts back a run state [`Activation::run_state`] took, while paused,
    /// into a device the transport has just activated again with the same
    /// queues (or left inactive, for `None`). On an error nothing changes.
    pub fn restore_run_state(&mut self, state: Option<&RunState>) -> Result<(), StateError>
    where
        Q: QueueSet,
    {
        if !self.paused {
            return Err(StateError::NotQuiescent("the device is not paused".into()));
        }
        let (running, state) = match (self.running.as_mut(), state) {
            (None, None) => return Ok(()),
            (Some(running), Some(state)) => (running, state),
            (running, _) => {
                return Err(StateError::Invalid(format!(
                    "the device was {} at save time and is {} now",
                    if running.is_some() {
                        "inactive"
                    } else {
                        "active"
                    },
                    if running.is_some() {
                        "active"
                    } else {
                        "inactive"
                    },
                )));
            }
        };
        let count = running.queues.count();
        if state.positions.len() != usize::from(count) {
            return Err(StateError::Invalid(format!(
                "{} queue positions saved, the device has {count} queues",
                state.positions.len()
            )));
        }
        for (index, position) in (0..count).zip(&state.positions) {
            match (running.queues.queue(index), position) {
                (None, None) => {}
                (Some(queue), Some(position)) => position
                    .check(queue.size())
                    .map_err(|e| StateError::Invalid(format!("queue {index}: {e}")))?,
                _ => {
                    return Err(StateError::Invalid(format!(
                        "queue {index} is enabled in only one of the saved state and the device"
                    )));
                }
            }
        }
        for (index, position) in (0..count).zip(&state.positions) {
            if let (Some(queue), Some(position)) = (running.queues.queue_mut(index), position) {
                position.apply(queue);
            }
        }
        running.broken = state.broken;
        Ok(())
    }

    /// Whether the driver activated the device (broken or not).
    pub fn is_active(&self) -> bool {
        self.running.is_some()
    }

    /// The running state, broken or not, paused or not.
    pub fn running(&self) -> Option<&Running<Q>> {
        self.running.as_ref()
    }

    /// The running state if the device may process its queues now: active,
    /// not broken, not paused.
    pub fn serving(&mut self) -> Option<&mut Running<Q>> {
        if self.paused {
            return None;
        }
        self.running.as_mut().filter(|r| !r.broken)
    }

    /// The driver notified `queue` of device `device`: the running state to
    /// process it with, `None` if the device is broken or paused (the
    /// notification is ignored, respectively left to the transport to
    /// replay), or `NotActivated`.
    pub fn notified(
        &mut self,
        device: &str,
        queue: u16,
    ) -> Result<Option<&mut Running<Q>>, DeviceError> {
        let paused = self.paused;
        let running = self.running.as_mut().ok_or(DeviceError::NotActivated)?;
        if running.broken {
            tracing::debug!(
                device,
                queue,
                "broken device ignores notifications until reset"
            );
            return Ok(None);
        }
        if paused {
            tracing::debug!(
                device,
                queue,
                "paused device leaves a notification for resume"
            );
            return Ok(None);
        }
        Ok(Some(running))
    }

    /// Quiesces the device: [`Activation::serving`] and
    /// [`Activation::notified`] give nothing to work with until
    /// [`Activation::resume`].
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Ends a pause.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Whether the device is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

/// Runs `fill`, which returns chains to `q` and sets its flag when it did
/// (a receive queue filled from a backend); then `used` is set if the
/// driver wants an interrupt for them ([`wants_interrupt`]).
pub fn fill_then_notify<T>(
    q: &mut Queue,
    mem: &GuestMemory,
    used: &mut bool,
    fill: impl FnOnce(&mut Queue, &mut bool) -> T,
) -> T {
    let mut returned = false;
    let result = fill(q, &mut returned);
    if returned {
        *used |= wants_interrupt(q, mem);
    }
    result
}

/// Answers every available chain of request queue `q` with `answer`, which
/// returns the bytes it wrote into the chain; each answered chain goes back
/// to the driver at once, and `used` is set if the driver wants an
/// interrupt for them ([`wants_interrupt`]).
pub fn drain<'m>(
    q: &mut Queue,
    mem: &'m GuestMemory,
    used: &mut bool,
    mut answer: impl FnMut(DescriptorChain<&'m GuestMemory>) -> Result<u32, ProcessError>,
) -> Result<(), ProcessError> {
    let mut returned = false;
    let result = (|| {
        while let Some(chain) = pop_chain(q, mem)? {
            let head = chain.head_index();
            let len = answer(chain)?;
            add_used(q, mem, head, len)?;
            returned = true;
        }
        Ok(())
    })();
    if returned {
        *used |= wants_interrupt(q, mem);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::*;
    use crate::virtio::pci_transport::interrupts::Interrupts;

    /// An MSI sink that drops every message.
    struct Silent;

    impl crate::interrupt::MsiSink for Silent {
        fn signal(&self, _address: u64, _data: u32) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Two queues, the second optional.
    struct Pair(Queue, Option<Queue>);

    impl QueueSet for Pair {
        fn count(&self) -> u16 {
            2
        }
        fn queue(&self, index: u16) -> Option<&Queue> {
            match index {
                0 => Some(&self.0),
                1 => self.1.as_ref(),
                _ => None,
            }
        }
        fn queue_mut(&mut self, index: u16) -> Option<&mut Queue> {
            match index {
                0 => Some(&mut self.0),
                1 => self.1.as_mut(),
                _ => None,
            }
        }
    }

    fn activation(second: bool) -> Activation<Pair> {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let queue = || -> Queue {
            MockSplitQueue::create(&mem, GuestAddress(0x1000), 16)
                .create_queue()
                .unwrap()
        };
        let interrupt = Arc::new(Interrupts::new(
            2,
            3,
            Arc::new(Silent),
            Arc::new(crate::interrupt::NoIrq),
        ));
        let ctx = ActivateContext {
            mem: GuestMemoryHandle::new(mem.clone()),
            queues: Vec::new(),
            features: 0,
            interrupt,
        };
        let mut a = Activation::default();
        a.start(ctx, Pair(queue(), second.then(queue)));
        a.pause();
        a
    }

    #[test]
    fn queue_positions_and_the_broken_mark_come_back() {
        let mut a = activation(true);
        if let Some(r) = a.running.as_mut() {
            r.queues.0.set_next_avail(9);
            r.queues.0.set_next_used(7);
            r.broken = true;
        }
        let state = a.run_state().unwrap().unwrap();
        let mut b = activation(true);
        b.restore_run_state(Some(&state)).unwrap();
        let r = b.running().unwrap();
        assert_eq!(
            QueuePosition::of(&r.queues.0),
            QueuePosition {
                next_avail: 9,
                next_used: 7
            }
        );
        assert!(r.is_broken());
        assert_eq!(b.run_state().unwrap(), Some(state));
    }

    #[test]
    fn a_run_state_that_does_not_fit_changes_nothing() {
        let mut a = activation(true);
        let mut state = a.run_state().unwrap().unwrap();
        // A queue enabled at save time is not enabled now.
        let mut one = activation(false);
        assert!(one.restore_run_state(Some(&state)).is_err());
        // More in flight than the queue holds.
        state.positions[0] = Some(QueuePosition {
            next_avail: 40,
            next_used: 2,
        });
        state.positions[1] = Some(QueuePosition {
            next_avail: 3,
            next_used: 3,
        });
        assert!(a.restore_run_state(Some(&state)).is_err());
        assert_eq!(
            a.run_state().unwrap().unwrap().positions[1],
            Some(QueuePosition {
                next_avail: 0,
                next_used: 0
            }),
            "the valid second queue was not moved either"
        );
        // Active now, inactive at save time; and not paused.
        assert!(a.restore_run_state(None).is_err());
        a.resume();
        assert!(matches!(a.run_state(), Err(StateError::NotQuiescent(_))));
    }
}
