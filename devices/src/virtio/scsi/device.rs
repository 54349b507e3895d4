//! The virtio-scsi device (type 8) and its host-side handle.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_queue::Queue;
use vm_memory::GuestAddressSpace;

use super::config::{
    CONTROL_QUEUE, EVENT_QUEUE, FIRST_REQUEST_QUEUE, MAX_REQUEST_QUEUES, QUEUE_SIZE, ScsiConfig,
    VIRTIO_ID_SCSI, VIRTIO_SCSI_F_HOTPLUG, event,
};
use super::control::handle_control;
use super::error::ProcessError;
use super::events::EventState;
use super::release::LunRelease;
use super::request::handle_command;
use crate::scsi::{LunTable, ScsiDisk, ScsiError};
use crate::virtio::device::read_config_window;
use crate::virtio::queue::{add_used, pop_chain};
use crate::virtio::{
    ActivateContext, DeviceError, GuestMemoryHandle, VIRTIO_F_VERSION_1, VirtioDevice,
    VirtioInterrupt,
};

struct Active {
    mem: GuestMemoryHandle,
    control: Queue,
    event: Option<Queue>,
    requests: Vec<Option<Queue>>,
    interrupt: Arc<dyn VirtioInterrupt>,
    hotplug: bool,
    broken: bool,
}

struct State {
    luns: LunTable,
    events: EventState,
    config: ScsiConfig,
    active: Option<Active>,
}

struct Inner {
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Active {
    fn fail(&mut self, queue: u16, e: &ProcessError) {
        tracing::warn!(queue, "virtio-scsi device broken: {e}");
        self.broken = true;
        self.interrupt
            .set_needs_reset(&format!("virtio-scsi queue {queue}: {e}"));
    }
}

impl State {
    /// Runs `queue` to empty; a guest error breaks the device.
    fn process(&mut self, queue: u16) -> Result<(), DeviceError> {
        let State {
            luns,
            events,
            config,
            active,
        } = self;
        let a = active.as_mut().ok_or(DeviceError::NotActivated)?;
        if a.broken {
            tracing::debug!(queue, "broken virtio-scsi device ignores notifications");
            return Ok(());
        }
        let mem = a.mem.memory();
        let result = match queue {
            CONTROL_QUEUE => drain(&mut a.control, &mem, |c| handle_control(c, &mem, luns)),
            EVENT_QUEUE => match a.event.as_mut() {
                Some(q) => events.process(q, &mem),
                None => Ok(false),
            },
            q => {
                let idx = usize::from(q.wrapping_sub(FIRST_REQUEST_QUEUE));
                match a.requests.get_mut(idx) {
                    Some(Some(rq)) => drain(rq, &mem, |c| handle_command(c, &mem, luns, config)),
                    Some(None) => Ok(false),
                    None => return Err(DeviceError::NoSuchQueue(q)),
                }
            }
        };
        match result {
            Ok(true) => a.interrupt.signal_queue(queue),
            Ok(false) => {}
            Err(e) => a.fail(queue, &e),
        }
        Ok(())
    }

    /// Delivers pending events if the driver is up and took hotplug.
    fn flush_events(&mut self) {
        if self.active.as_ref().is_some_and(|a| a.hotplug && !a.broken)
            && let Err(e) = self.process(EVENT_QUEUE)
        {
            tracing::debug!("virtio-scsi event delivery skipped: {e}");
        }
    }

    /// Whether a hotplug event would reach the guest driver.
    fn events_reach_guest(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.hotplug && a.event.is_some() && !a.broken)
    }
}

/// Pops and answers every chain of `q`; returns whether any was used.
fn drain<'m, F>(
    q: &mut Queue,
    mem: &'m crate::virtio::GuestMemory,
    mut f: F,
) -> Result<bool, ProcessError>
where
    F: FnMut(
        virtio_queue::DescriptorChain<&'m crate::virtio::GuestMemory>,
    ) -> Result<u32, ProcessError>,
{
    let mut used = false;
    while let Some(chain) = pop_chain(q, mem)? {
        let head = chain.head_index();
        let len = f(chain)?;
        add_used(q, mem, head, len)?;
        used = true;
    }
    Ok(used)
}

/// The virtio-scsi device: one target with LUNs 0 to 63. Give it to the
/// transport; keep a [`ScsiHost`] (from [`VirtioScsiDevice::host`]) to add
/// and remove LUNs while the guest runs.
pub struct VirtioScsiDevice {
    inner: Arc<Inner>,
    request_queues: u16,
    acked_features: u64,
}

impl VirtioScsiDevice {
    /// A device with `request_queues` request queues (clamped to 1..=8).
    pub fn new(request_queues: u16) -> Self {
        let request_queues = request_queues.clamp(1, MAX_REQUEST_QUEUES);
        VirtioScsiDevice {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    luns: LunTable::new(),
                    events: EventState::default(),
                    config: ScsiConfig::new(u32::from(request_queues)),
                    active: None,
                }),
            }),
            request_queues,
            acked_features: 0,
        }
    }

    /// The host-side handle for LUN hot add and removal.
    pub fn host(&self) -> ScsiHost {
        ScsiHost {
            inner: self.inner.clone(),
        }
    }
}

/// Host side of a virtio-scsi device: attaches and detaches LUNs from any
/// thread, before or while the guest runs. Cheap to clone.
#[derive(Clone)]
pub struct ScsiHost {
    inner: Arc<Inner>,
}

impl ScsiHost {
    /// Attaches `disk` at `lun`. While the driver runs (with
    /// VIRTIO_SCSI_F_HOTPLUG) a TRANSPORT_RESET/RESCAN event tells it to scan
    /// the LUN; before that, the driver's probe-time scan finds it.
    pub fn add_lun(&self, lun: u16, disk: ScsiDisk) -> Result<(), ScsiError> {
        let mut st = self.inner.lock();
        st.luns.insert(lun, disk)?;
        tracing::info!(lun, "SCSI LUN added");
        if st.events_reach_guest() {
            st.events.push_reset(lun, event::RESET_RESCAN, None);
            st.flush_events();
        } else if st.active.is_some() {
            tracing::warn!(
                lun,
                "guest driver took no hotplug events: LUN added silently"
            );
        }
        Ok(())
    }

    /// Detaches the disk at `lun` now: from this call on, commands to it
    /// fail with LOGICAL UNIT NOT SUPPORTED and the host file is closed.
    /// The returned [`LunRelease`] fires once the guest has released the
    /// LUN (see the [module documentation](super) for the exact signal).
    pub fn remove_lun(&self, lun: u16) -> Result<LunRelease, ScsiError> {
        let mut st = self.inner.lock();
        let disk = st.luns.remove(lun)?;
        drop(disk);
        tracing::info!(lun, "SCSI LUN removed");
        if !st.events_reach_guest() {
            if st.active.is_some() {
                tracing::warn!(
                    lun,
                    "guest driver took no hotplug events: removal not announced"
                );
            }
            return Ok(LunRelease::done());
        }
        let release = LunRelease::pending();
        st.events
            .push_reset(lun, event::RESET_REMOVED, Some(release.clone()));
        st.flush_events();
        Ok(release)
    }

    /// The attached LUNs in ascending order.
    pub fn luns(&self) -> Vec<u16> {
        self.inner.lock().luns.luns()
    }

    /// Events waiting for a guest buffer.
    pub fn pending_events(&self) -> usize {
        self.inner.lock().events.pending()
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
        let cfg = self.inner.lock().config.bytes();
        read_config_window(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.inner.lock().config.write(offset, data);
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
        let mut st = self.inner.lock();
        st.events.reset();
        st.active = Some(Active {
            mem: ctx.mem,
            control,
            event,
            requests,
            interrupt: ctx.interrupt,
            hotplug,
            broken: false,
        });
        tracing::debug!(hotplug, luns = ?st.luns.luns(), "virtio-scsi activated");
        Ok(())
    }

    fn reset(&mut self) {
        let mut st = self.inner.lock();
        st.active = None;
        st.events.reset();
        st.config = ScsiConfig::new(u32::from(self.request_queues));
    }

    fn queue_notify(&mut self, queue: u16) -> Result<(), DeviceError> {
        self.inner.lock().process(queue)
    }
}

impl Drop for VirtioScsiDevice {
    fn drop(&mut self) {
        // The guest cannot hold a LUN of a device that is gone.
        self.inner.lock().events.reset();
    }
}
