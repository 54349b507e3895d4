//! The virtio-scsi device (type 8) and its host-side handle.

use std::sync::Arc;

use parking_lot::Mutex;
use virtio_queue::{Queue, QueueT};

use super::config::{
    CONTROL_QUEUE, EVENT_QUEUE, FIRST_REQUEST_QUEUE, MAX_REQUEST_QUEUES, QUEUE_SIZE, ScsiConfig,
    VIRTIO_ID_SCSI, VIRTIO_SCSI_F_HOTPLUG, event,
};
use super::control::handle_control;
use super::events::{EventState, EventsSnapshot};
use super::request::handle_command;
use crate::quiesce::{Pausable, PauseError};
use crate::release::ReleaseSignal;
use crate::scsi::{LunTable, ScsiError, ScsiLun};
use crate::snapshot::{DeviceState, Snapshottable, StateError};
use crate::virtio::device::read_config_window;
use crate::virtio::queue::QueueSet;
use crate::virtio::running::RunState;
use crate::virtio::{
    ActivateContext, Activation, DeviceError, QueueHandler, Running, VIRTIO_F_VERSION_1,
    VirtioDevice, drain, wants_interrupt,
};

/// The device's name in logs.
const DEVICE: &str = "virtio-scsi";

/// The queues of a running device.
struct Queues {
    control: Queue,
    event: Option<Queue>,
    requests: Vec<Option<Queue>>,
    /// Whether the driver took VIRTIO_SCSI_F_HOTPLUG (events reach it).
    hotplug: bool,
}

/// The SCSI target the queues act on: its LUNs, its pending hotplug
/// events and the driver-writable configuration.
struct Target {
    luns: LunTable,
    events: EventState,
    config: ScsiConfig,
}

/// Everything the device and its host handle share.
struct State {
    target: Target,
    activation: Activation<Queues>,
}

impl Target {
    /// Runs `queue` to empty; a guest error breaks the device.
    fn process(&mut self, running: &mut Running<Queues>, queue: u16) -> Result<(), DeviceError> {
        let Target {
            luns,
            events,
            config,
        } = self;
        if let Some(idx) = queue.checked_sub(FIRST_REQUEST_QUEUE)
            && running.queues.requests.get(usize::from(idx)).is_none()
        {
            return Err(DeviceError::NoSuchQueue(queue));
        }
        running.process(DEVICE, queue, "queue", |q, mem, used| match queue {
            CONTROL_QUEUE => drain(&mut q.control, mem, used, |c| handle_control(c, mem, luns)),
            EVENT_QUEUE => match q.event.as_mut() {
                Some(eq) => {
                    if events.process(eq, mem)? {
                        *used |= wants_interrupt(eq, mem);
                    }
                    Ok(())
                }
                None => Ok(()),
            },
            request => match q
                .requests
                .get_mut(usize::from(request - FIRST_REQUEST_QUEUE))
            {
                Some(Some(rq)) => drain(rq, mem, used, |c| handle_command(c, mem, luns, config)),
                _ => Ok(()),
            },
        });
        Ok(())
    }
}

impl State {
    /// Delivers pending events if the driver is up, took hotplug, and the
    /// device is not paused.
    fn flush_events(&mut self) {
        let State { target, activation } = self;
        if let Some(running) = activation.serving().filter(|r| r.queues.hotplug)
            && let Err(e) = target.process(running, EVENT_QUEUE)
        {
            tracing::debug!("virtio-scsi event delivery skipped: {e}");
        }
    }

    /// Whether a hotplug event would reach the guest driver.
    fn events_reach_guest(&self) -> bool {
        self.activation
            .running()
            .is_some_and(|r| r.queues.hotplug && r.queues.event.is_some() && !r.is_broken())
    }
}

/// The virtio-scsi device: one target with LUNs 0 to 63. Give it to the
/// transport; keep a [`ScsiHost`] (from [`VirtioScsiDevice::host`]) to add
/// and remove LUNs while the guest runs.
pub struct VirtioScsiDevice {
    state: Arc<Mutex<State>>,
    /// The configuration as the driver reads and writes it, apart from the
    /// run state so that a vCPU reading it never waits for a request the
    /// worker serves; each pass over a queue takes a copy.
    config: Arc<Mutex<ScsiConfig>>,
    request_queues: u16,
    acked_features: u64,
}

impl VirtioScsiDevice {
    /// A device with `request_queues` request queues (clamped to 1..=8).
    pub fn new(request_queues: u16) -> Self {
        let request_queues = request_queues.clamp(1, MAX_REQUEST_QUEUES);
        VirtioScsiDevice {
            state: Arc::new(Mutex::new(State {
                target: Target {
                    luns: LunTable::new(),
                    events: EventState::default(),
                    config: ScsiConfig::new(u32::from(request_queues)),
                },
                activation: Activation::default(),
            })),
            config: Arc::new(Mutex::new(ScsiConfig::new(u32::from(request_queues)))),
            request_queues,
            acked_features: 0,
        }
    }

    /// The host-side handle for LUN hot add and removal.
    pub fn host(&self) -> ScsiHost {
        ScsiHost {
            state: self.state.clone(),
        }
    }
}

/// Host side of a virtio-scsi device: attaches and detaches LUNs from any
/// thread, before or while the guest runs. Cheap to clone.
#[derive(Clone)]
pub struct ScsiHost {
    state: Arc<Mutex<State>>,
}

impl ScsiHost {
    /// Attaches `disk` at `lun`. While the driver runs (with
    /// VIRTIO_SCSI_F_HOTPLUG) a TRANSPORT_RESET/RESCAN event tells it to scan
    /// the LUN; before that, the driver's probe-time scan finds it.
    pub fn add_lun(&self, lun: u16, disk: ScsiLun) -> Result<(), ScsiError> {
        let mut st = self.state.lock();
        st.target.luns.insert(lun, disk)?;
        tracing::info!(lun, "SCSI LUN added");
        if st.events_reach_guest() {
            st.target.events.push_reset(lun, event::RESET_RESCAN, None);
            st.flush_events();
        } else if st.activation.is_active() {
            tracing::warn!(
                lun,
                "guest driver took no hotplug events: LUN added silently"
            );
        }
        Ok(())
    }

    /// Detaches the disk at `lun` now: from this call on, commands to it
    /// fail with LOGICAL UNIT NOT SUPPORTED and the host file is closed.
    /// The returned [`ReleaseSignal`] fires once the guest has released the
    /// LUN (see the [module documentation](super) for the exact signal).
    pub fn remove_lun(&self, lun: u16) -> Result<ReleaseSignal, ScsiError> {
        let mut st = self.state.lock();
        let disk = st.target.luns.remove(lun)?;
        drop(disk);
        tracing::info!(lun, "SCSI LUN removed");
        if !st.events_reach_guest() {
            if st.activation.is_active() {
                tracing::warn!(
                    lun,
                    "guest driver took no hotplug events: removal not announced"
                );
            }
            return Ok(ReleaseSignal::done());
        }
        let release = ReleaseSignal::pending();
        st.target
            .events
            .push_reset(lun, event::RESET_REMOVED, Some(release.clone()));
        st.flush_events();
        Ok(release)
    }

    /// The attached LUNs in ascending order.
    pub fn luns(&self) -> Vec<u16> {
        self.state.lock().target.luns.luns()
    }

    /// Events waiting for a guest buffer.
    pub fn pending_events(&self) -> usize {
        self.state.lock().target.events.pending()
    }
}

impl VirtioDevice for VirtioScsiDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_SCSI
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; usize::from(FIRST_REQUEST_QUEUE + self.request_queues)]
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_SCSI_F_HOTPLUG
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.config.lock().bytes();
        read_config_window(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config.lock().write(offset, data);
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), DeviceError> {
        let control = ctx.take_queue(CONTROL_QUEUE)?;
        let event = ctx.take_optional_queue(EVENT_QUEUE);
        let requests: Vec<Option<Queue>> = std::mem::take(&mut ctx.queues)
            .into_iter()
            .skip(usize::from(FIRST_REQUEST_QUEUE))
            .collect();
        if requests.first().is_none_or(Option::is_none) {
            return Err(DeviceError::QueueMissing(FIRST_REQUEST_QUEUE));
        }
        let hotplug = ctx.features & VIRTIO_SCSI_F_HOTPLUG != 0;
        let mut st = self.state.lock();
        st.target.events.reset();
        st.activation.start(
            ctx,
            Queues {
                control,
                event,
                requests,
                hotplug,
            },
        );
        tracing::debug!(hotplug, luns = ?st.target.luns.luns(), "virtio-scsi activated");
        Ok(())
    }

    fn reset(&mut self) {
        let mut st = self.state.lock();
        st.activation.stop();
        st.target.events.reset();
        st.target.config = ScsiConfig::new(u32::from(self.request_queues));
        drop(st);
        *self.config.lock() = ScsiConfig::new(u32::from(self.request_queues));
    }

    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(ScsiQueues {
            state: self.state.clone(),
            config: self.config.clone(),
        })
    }
}

/// Serves the queues of a virtio-scsi device (its worker's handler): one
/// pass over the notified queue under the device's own lock.
struct ScsiQueues {
    state: Arc<Mutex<State>>,
    config: Arc<Mutex<ScsiConfig>>,
}

impl QueueHandler for ScsiQueues {
    fn handle_queue(&self, queue: u16) -> Result<(), DeviceError> {
        let config = *self.config.lock();
        let mut st = self.state.lock();
        st.target.config = config;
        let State { target, activation } = &mut *st;
        match activation.notified(DEVICE, queue)? {
            Some(running) => target.process(running, queue),
            None => Ok(()),
        }
    }
}

impl Pausable for VirtioScsiDevice {
    /// Commands run on guest notifications (which the transport holds while
    /// paused); hotplug events wait until resume.
    fn pause(&mut self) -> Result<(), PauseError> {
        self.state.lock().activation.pause();
        Ok(())
    }

    /// Events queued while paused go to the guest now.
    fn resume(&mut self) -> Result<(), PauseError> {
        let mut st = self.state.lock();
        st.activation.resume();
        st.flush_events();
        Ok(())
    }
}

/// The kind and version of the device's state in a snapshot.
const STATE_KIND: &str = "virtio-scsi";
const STATE_VERSION: u32 = 1;

/// A LUN as a snapshot names it; the VMM attaches the disks again from
/// their host paths before the state goes back, and the state checks that
/// it found the same ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedLun {
    lun: u16,
    blocks: u64,
    read_only: bool,
}

/// What a snapshot keeps of a virtio-scsi device: its run state (queue
/// positions), the sizes the driver configured, its LUNs and its event
/// queue.
#[derive(serde::Serialize, serde::Deserialize)]
struct ScsiState {
    run: Option<RunState>,
    sense_size: u32,
    cdb_size: u32,
    luns: Vec<SavedLun>,
    events: EventsSnapshot,
}

fn saved_luns(luns: &LunTable) -> Vec<SavedLun> {
    luns.luns()
        .into_iter()
        .filter_map(|lun| {
            luns.get(lun).map(|disk| SavedLun {
                lun,
                blocks: disk.image().blocks(),
                read_only: disk.image().read_only(),
            })
        })
        .collect()
}

impl Snapshottable for VirtioScsiDevice {
    /// Refused while running and while a LUN removal waits for the guest.
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        let st = self.state.lock();
        let config = *self.config.lock();
        let state = ScsiState {
            run: st.activation.run_state()?,
            sense_size: config.sense_size,
            cdb_size: config.cdb_size,
            luns: saved_luns(&st.target.luns),
            events: st.target.events.snapshot()?,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    /// Expects the same LUNs attached again (same sizes and modes) and the
    /// transport's re-activation done. On an error nothing changes.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let saved: ScsiState = state.decode(STATE_KIND, STATE_VERSION)?;
        let config = ScsiConfig::new(u32::from(self.request_queues))
            .with_driver_sizes(saved.sense_size, saved.cdb_size)
            .map_err(StateError::Invalid)?;
        let mut st = self.state.lock();
        let attached = saved_luns(&st.target.luns);
        if attached != saved.luns {
            return Err(StateError::Invalid(format!(
                "LUNs {:?} saved, {:?} attached",
                saved.luns, attached
            )));
        }
        let event_queue_size = st
            .activation
            .running()
            .and_then(|r| r.queues.event.as_ref())
            .map_or(0, |q| q.size());
        let mut events = EventState::default();
        events.restore(&saved.events, event_queue_size)?;
        st.activation.restore_run_state(saved.run.as_ref())?;
        st.target.events = events;
        st.target.config = config;
        drop(st);
        *self.config.lock() = config;
        Ok(())
    }
}

impl QueueSet for Queues {
    fn count(&self) -> u16 {
        FIRST_REQUEST_QUEUE + self.requests.len() as u16
    }

    fn queue(&self, index: u16) -> Option<&Queue> {
        match index {
            CONTROL_QUEUE => Some(&self.control),
            EVENT_QUEUE => self.event.as_ref(),
            i => self
                .requests
                .get(usize::from(i - FIRST_REQUEST_QUEUE))?
                .as_ref(),
        }
    }

    fn queue_mut(&mut self, index: u16) -> Option<&mut Queue> {
        match index {
            CONTROL_QUEUE => Some(&mut self.control),
            EVENT_QUEUE => self.event.as_mut(),
            i => self
                .requests
                .get_mut(usize::from(i - FIRST_REQUEST_QUEUE))?
                .as_mut(),
        }
    }
}

impl Drop for VirtioScsiDevice {
    fn drop(&mut self) {
        // The guest cannot hold a LUN of a device that is gone.
        self.state.lock().target.events.reset();
    }
}
