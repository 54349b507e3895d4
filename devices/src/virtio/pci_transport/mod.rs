//! The modern (virtio 1.x) virtio-pci transport.
//!
//! One 64-bit memory BAR (BAR 0, [`caps::BAR0_SIZE`] bytes) holds the common
//! configuration, the ISR byte, the device configuration, the notification
//! region (one 4-byte slot per queue) and the MSI-X table and PBA; vendor
//! capabilities in configuration space point at each part.
//!
//! VMM wiring: wrap the device in `Arc<Mutex<VirtioPciDevice>>`, add it to
//! the [`crate::pci::PciRoot`] (coerced to a [`crate::pci::SharedFunction`]);
//! guest BAR accesses then reach it through [`crate::pci::PciBarWindow`].
//!
//! Queue work runs on a device worker ([`crate::virtio::worker`]) once the
//! VMM gives the transport an [`IoEventRegistry`]
//! ([`VirtioPciDevice::with_worker`]): at DRIVER_OK the transport starts the
//! worker and ties each enabled queue's kick to its notification address
//! (KVM_IOEVENTFD), follows the BAR if the guest moves it, and unties and
//! joins everything at reset and drop. Without a registry (tests, tools)
//! notifications are served on the thread that writes the notify region.

pub mod caps;
pub mod common_cfg;
pub mod interrupts;
pub mod msix;

use std::collections::BTreeSet;
use std::sync::Arc;

use common_cfg::{CommonAction, CommonCfg};
use interrupts::{Interrupts, InterruptsState};
use vm_memory::GuestAddressSpace;

use crate::interrupt::{IrqLine, MsiSink};
use crate::ioevent::IoEventRegistry;
use crate::pci::{
    BarInfo, BarKind, BarRegion, COMMAND_MEMORY, ConfigSpace, ConfigSpaceError, PciFunction,
    PciHeader,
};
use crate::quiesce::{Pausable, PauseError};
use crate::snapshot::{DeviceState, Snapshottable, StateError};
use crate::virtio::queue::build_queue;
use crate::virtio::worker::{KickCount, PanicHook, QueueWorker};
use crate::virtio::{
    ActivateContext, GuestMemoryHandle, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VirtioDevice,
    VirtioInterrupt, status,
};
use virtio_queue::QueueT;

/// PCI vendor id of virtio devices.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern virtio device ids are this plus the device type.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device declares no queues or more than the layout can notify.
    #[error("device declares {0} queues")]
    QueueCount(usize),
    /// The device does not offer VIRTIO_F_VERSION_1.
    #[error("device does not offer VIRTIO_F_VERSION_1")]
    NotModern,
    /// The configuration space could not hold the capabilities.
    #[error("configuration space: {0}")]
    Config(#[from] ConfigSpaceError),
}

/// A virtio device behind the virtio-pci transport: a [`PciFunction`].
pub struct VirtioPciDevice {
    config: ConfigSpace,
    msix_cap: usize,
    device: Box<dyn VirtioDevice>,
    device_features: u64,
    common: CommonCfg,
    interrupts: Arc<Interrupts>,
    mem: GuestMemoryHandle,
    activated: bool,
    /// Paused by the VMM: queue notifications wait in `deferred`.
    paused: bool,
    /// Queues notified while paused, handled at resume (no worker).
    deferred: BTreeSet<u16>,
    /// How to run a worker, if the VMM asked for one.
    worker_setup: Option<WorkerSetup>,
    /// The worker of the activated device.
    worker: Option<QueueWorker>,
    /// The worker of a device the driver reset, finishing its last
    /// request; the reset completes (status reads 0) once it has ended.
    stopping: Option<QueueWorker>,
    /// Kicks tied to notification addresses: (address, queue).
    registered: Vec<(u64, u16)>,
    /// Where the worker counts the kicks it receives.
    kick_count: KickCount,
}

/// What [`VirtioPciDevice::with_worker`] configured.
struct WorkerSetup {
    name: String,
    ioevents: Arc<dyn IoEventRegistry>,
    on_panic: Option<PanicHook>,
}

impl VirtioPciDevice {
    /// Wraps `device`. MSI-X messages leave through `msi`, legacy INTx
    /// (INTA#) through `intx`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryHandle,
        msi: Arc<dyn MsiSink>,
        intx: Arc<dyn IrqLine>,
    ) -> Result<Self, TransportError> {
        let sizes = device.queue_max_sizes();
        let vectors = sizes.len() + 1;
        if sizes.is_empty()
            || vectors > usize::from(caps::MAX_VECTORS)
            || sizes.len() as u64 * u64::from(caps::NOTIFY_OFF_MULTIPLIER) > caps::NOTIFY_LEN
        {
            return Err(TransportError::QueueCount(sizes.len()));
        }
        let device_features = device.device_features() | VIRTIO_F_EVENT_IDX;
        if device_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(TransportError::NotModern);
        }
        let device_type = device.device_type();
        let mut config = ConfigSpace::new(&PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR,
            device_id: VIRTIO_PCI_DEVICE_BASE.wrapping_add(device_type as u16),
            revision: 1,
            class: 0xff,
            subclass: 0,
            prog_if: 0,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR,
            subsystem_id: 0x40,
        });
        config.add_bar(0, caps::BAR0_SIZE, BarKind::Memory64, false)?;
        config.set_interrupt_pin(1);
        let msix_cap = caps::add_capabilities(&mut config, vectors as u16)?;
        let interrupts = Arc::new(Interrupts::new(sizes.len(), vectors as u16, msi, intx));
        Ok(VirtioPciDevice {
            config,
            msix_cap,
            device,
            device_features,
            common: CommonCfg::new(&sizes),
            interrupts,
            mem,
            activated: false,
            paused: false,
            deferred: BTreeSet::new(),
            worker_setup: None,
            worker: None,
            stopping: None,
            registered: Vec::new(),
            kick_count: KickCount::default(),
        })
    }

    /// Serves the queues on a device worker thread named `name`, whose
    /// kicks are tied to the notification addresses through `ioevents`;
    /// `on_panic` hears of a worker that panicked.
    pub fn with_worker(
        mut self,
        name: &str,
        ioevents: Arc<dyn IoEventRegistry>,
        on_panic: Option<PanicHook>,
    ) -> Self {
        self.worker_setup = Some(WorkerSetup {
            name: name.to_owned(),
            ioevents,
            on_panic,
        });
        self
    }

    /// Has the worker add the kicks it receives to `count` (shared by the
    /// VM's devices; by default the transport keeps its own).
    pub fn counting_kicks_in(mut self, count: KickCount) -> Self {
        self.kick_count = count;
        self
    }

    /// Whether a device worker serves the queues now.
    pub fn has_worker(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| !w.has_ended())
    }

    /// The notification addresses tied to kicks now, ascending.
    pub fn registered_notify_addresses(&self) -> Vec<u64> {
        let mut addresses: Vec<u64> = self.registered.iter().map(|(a, _)| *a).collect();
        addresses.sort_unstable();
        addresses
    }

    /// The device status as the guest reads it.
    pub fn status(&self) -> u8 {
        let mut s = self.common.status;
        if self.interrupts.needs_reset() {
            s |= status::DEVICE_NEEDS_RESET;
        }
        s
    }

    /// Whether the device runs (DRIVER_OK accepted, not broken).
    pub fn is_active(&self) -> bool {
        self.activated && !self.interrupts.needs_reset()
    }

    /// The interrupt handle the device was (or will be) activated with.
    pub fn interrupts(&self) -> Arc<dyn VirtioInterrupt> {
        self.interrupts.clone()
    }

    /// Guest physical address of the notification slot of `queue` while the
    /// guest has BAR 0 mapped (for an ioeventfd).
    pub fn notify_address(&self, queue: u16) -> Option<u64> {
        if usize::from(queue) >= self.common.queues.len() {
            return None;
        }
        let bar = self
            .config
            .mapped_bars()
            .into_iter()
            .find(|b| b.index == 0)?;
        Some(
            bar.address
                + caps::NOTIFY_OFFSET
                + u64::from(queue) * u64::from(caps::NOTIFY_OFF_MULTIPLIER),
        )
    }

    /// The driver notified `queue` (BAR write or ioeventfd). While paused
    /// the notification is kept and handled at resume.
    pub fn notify_queue(&mut self, queue: u16) {
        if self.stopping.is_some() {
            tracing::debug!(queue, "notification during a reset ignored");
            return;
        }
        if !self.is_active() {
            tracing::debug!(queue, "notification for an inactive device ignored");
            return;
        }
        if let Some(worker) = &self.worker {
            // The worker keeps it while paused.
            worker.notify(queue);
            return;
        }
        if self.paused {
            if usize::from(queue) < self.common.queues.len() && self.deferred.insert(queue) {
                tracing::debug!(queue, "notification kept for resume");
            }
            return;
        }
        if let Err(e) = self.device.queue_notify(queue) {
            self.interrupts.set_needs_reset(&e.to_string());
        }
    }

    /// Unties the kicks and joins the worker (a running handler finishes).
    fn stop_worker(&mut self) {
        self.untie_kicks();
        if let Some(mut worker) = self.worker.take() {
            worker.stop();
        }
    }

    fn untie_kicks(&mut self) {
        let (Some(setup), Some(worker)) = (&self.worker_setup, &self.worker) else {
            self.registered.clear();
            return;
        };
        for (address, queue) in self.registered.drain(..) {
            if let Some(kick) = worker.kick(queue)
                && let Err(error) = setup.ioevents.unregister(address, kick)
            {
                tracing::debug!(address, queue, %error, "queue kick not untied");
            }
        }
    }

    /// Ties each kick to its queue's notification address as the BAR is
    /// mapped now (none while memory decoding is off); re-ties them if the
    /// guest moved the BAR.
    fn tie_kicks(&mut self) {
        let Some(worker) = &self.worker else {
            return;
        };
        let wanted: Vec<(u64, u16)> = worker
            .kicked_queues()
            .filter_map(|q| self.notify_address(q).map(|a| (a, q)))
            .collect();
        if wanted == self.registered {
            return;
        }
        self.untie_kicks();
        let (Some(setup), Some(worker)) = (&self.worker_setup, &self.worker) else {
            return;
        };
        for (address, queue) in wanted {
            let Some(kick) = worker.kick(queue) else {
                continue;
            };
            match setup.ioevents.register(address, kick) {
                Ok(()) => self.registered.push((address, queue)),
                // The MMIO path still reaches the worker.
                Err(error) => tracing::warn!(
                    address,
                    queue,
                    %error,
                    "queue kick not tied to its notification address"
                ),
            }
        }
    }

    fn start_worker(&mut self) {
        let Some(setup) = &self.worker_setup else {
            return;
        };
        let enabled: Vec<bool> = self.common.queues.iter().map(|q| q.enabled).collect();
        match QueueWorker::spawn(
            &setup.name,
            &enabled,
            self.device.queue_handler(),
            self.interrupts.clone(),
            self.paused,
            setup.on_panic.clone(),
            self.kick_count.clone(),
        ) {
            Ok(worker) => {
                self.worker = Some(worker);
                self.tie_kicks();
            }
            // Notifications are then served on the notifying thread.
            Err(error) => {
                tracing::error!(worker = %setup.name, %error, "device worker not started")
            }
        }
    }

    /// The driver wrote status 0. With a worker that may be in the middle
    /// of a request (a disk read), the vCPU does not wait for it: the
    /// kicks are untied, the worker is told to stop, and the device status
    /// keeps reading non-zero until it has ended. That is the reset
    /// handshake of virtio 1.x section 4.1.4.3.2 ("after writing 0 to
    /// device_status, the driver MUST wait for a read of device_status to
    /// return 0"), which Linux's `vp_reset` follows (it polls every 1 ms).
    fn reset(&mut self) {
        self.untie_kicks();
        if let Some(worker) = self.worker.take() {
            worker.request_stop();
            self.stopping = Some(worker);
        }
        self.finish_reset();
    }

    /// Whether a reset waits for the old worker to end.
    fn reset_pending(&mut self) -> bool {
        self.stopping.is_some() && !self.finish_reset()
    }

    /// Completes a reset once the old worker (if any) has ended; returns
    /// whether it did.
    fn finish_reset(&mut self) -> bool {
        if let Some(worker) = &self.stopping {
            if !worker.has_ended() {
                return false;
            }
            // Joins a thread that has already ended.
            self.stopping = None;
        }
        self.reset_now();
        true
    }

    fn reset_now(&mut self) {
        self.deferred.clear();
        if self.activated {
            tracing::info!(
                device_type = self.device.device_type(),
                "the driver reset the running device"
            );
            self.device.reset();
            self.activated = false;
        }
        self.common.reset();
        {
            let mut irq = self.interrupts.lock();
            irq.isr = 0;
            irq.config_vector = interrupts::NO_VECTOR;
            irq.queue_vectors.fill(interrupts::NO_VECTOR);
        }
        self.interrupts.clear_needs_reset();
        tracing::debug!("virtio device reset");
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.common.status;
        if value & old != old {
            crate::log_limited!(
                warn,
                old,
                value,
                "driver cleared status bits without a reset; ignored"
            );
            return;
        }
        let added = value & !old;
        let mut new = value & !status::DEVICE_NEEDS_RESET;
        if added & status::FEATURES_OK != 0 {
            let f = self.common.driver_features;
            if f & VIRTIO_F_VERSION_1 == 0 || f & !self.device_features != 0 {
                crate::log_limited!(
                    warn,
                    features = f,
                    offered = self.device_features,
                    "feature negotiation failed"
                );
                new &= !status::FEATURES_OK;
            } else {
                self.device.ack_features(f);
            }
        }
        if added & status::FAILED != 0 {
            crate::log_limited!(warn, "driver set FAILED");
        }
        self.common.status = new;
        if added & status::DRIVER_OK != 0 {
            if new & status::FEATURES_OK == 0 {
                crate::log_limited!(warn, "DRIVER_OK without FEATURES_OK");
                self.interrupts
                    .set_needs_reset("DRIVER_OK without FEATURES_OK");
                return;
            }
            self.activate();
        }
    }

    /// DRIVER_OK: the device runs, or is marked broken (DEVICE_NEEDS_RESET,
    /// with the configuration interrupt) if it cannot.
    fn activate(&mut self) {
        if let Err(reason) = self.try_activate() {
            self.interrupts.set_needs_reset(&reason);
        }
    }

    /// Builds the queues the driver set up and activates the device with
    /// them, starting its worker; says why it could not.
    fn try_activate(&mut self) -> Result<(), String> {
        let mem = self.mem.memory();
        let mut queues = Vec::with_capacity(self.common.queues.len());
        for (i, q) in self.common.queues.iter().enumerate() {
            if !q.enabled {
                queues.push(None);
                continue;
            }
            let mut queue = build_queue(q.max_size, q.size, q.desc, q.avail, q.used, &mem)
                .map_err(|e| format!("queue {i} set-up invalid: {e}"))?;
            queue.set_event_idx(self.common.driver_features & VIRTIO_F_EVENT_IDX != 0);
            queues.push(Some(queue));
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues,
            features: self.common.driver_features,
            interrupt: self.interrupts.clone(),
        };
        self.device
            .activate(ctx)
            .map_err(|e| format!("activation failed: {e}"))?;
        self.activated = true;
        self.start_worker();
        tracing::info!(
            device_type = self.device.device_type(),
            "virtio device activated"
        );
        Ok(())
    }

    fn msix_control(&self) -> u16 {
        message_control(&self.config, self.msix_cap)
    }

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            o if o < caps::COMMON_LEN => {
                // While a reset waits for the old worker, the status keeps
                // its old (non-zero) value.
                self.reset_pending();
                let st = self.status();
                let irq = self.interrupts.lock();
                self.common.read(o, data, self.device_features, st, &irq);
            }
            o if (caps::ISR_OFFSET..caps::ISR_OFFSET + 4).contains(&o) => {
                data.fill(0);
                if o == caps::ISR_OFFSET
                    && let Some(b) = data.first_mut()
                {
                    let mut irq = self.interrupts.lock();
                    *b = irq.isr;
                    irq.isr = 0;
                }
            }
            o if (caps::DEVICE_OFFSET..caps::DEVICE_OFFSET + caps::DEVICE_LEN).contains(&o) => {
                self.device.read_config(o - caps::DEVICE_OFFSET, data);
            }
            o if (caps::MSIX_TABLE_OFFSET..caps::MSIX_PBA_OFFSET).contains(&o) => {
                self.interrupts
                    .lock()
                    .msix
                    .table_read(o - caps::MSIX_TABLE_OFFSET, data);
            }
            o if (caps::MSIX_PBA_OFFSET..caps::BAR0_SIZE).contains(&o) => {
                self.interrupts
                    .lock()
                    .msix
                    .pba_read(o - caps::MSIX_PBA_OFFSET, data);
            }
            _ => data.fill(0),
        }
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if o < caps::COMMON_LEN && self.reset_pending() => {
                tracing::debug!(offset, "common configuration write during a reset ignored");
            }
            o if o < caps::COMMON_LEN => {
                let action = {
                    let mut irq = self.interrupts.lock();
                    self.common.write(o, data, &mut irq)
                };
                if let CommonAction::Status(v) = action {
                    self.write_status(v);
                }
            }
            o if (caps::DEVICE_OFFSET..caps::DEVICE_OFFSET + caps::DEVICE_LEN).contains(&o) => {
                self.device.write_config(o - caps::DEVICE_OFFSET, data);
            }
            o if (caps::NOTIFY_OFFSET..caps::NOTIFY_OFFSET + caps::NOTIFY_LEN).contains(&o) => {
                let rel = o - caps::NOTIFY_OFFSET;
                let mult = u64::from(caps::NOTIFY_OFF_MULTIPLIER);
                if rel.is_multiple_of(mult) {
                    self.notify_queue((rel / mult) as u16);
                } else {
                    tracing::debug!(offset, "misaligned queue notification ignored");
                }
            }
            o if (caps::MSIX_TABLE_OFFSET..caps::MSIX_PBA_OFFSET).contains(&o) => {
                self.interrupts
                    .lock()
                    .msix
                    .table_write(o - caps::MSIX_TABLE_OFFSET, data);
            }
            _ => tracing::debug!(offset, "write to a read-only part of BAR 0 ignored"),
        }
    }
}

impl PciFunction for VirtioPciDevice {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(usize::from(offset), data);
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(usize::from(offset), data);
        if self.worker.is_some() {
            self.tie_kicks();
        }
        let ctrl_at = self.msix_cap + 2;
        let start = usize::from(offset);
        if start < ctrl_at + 2 && start + data.len() > ctrl_at {
            let control = self.msix_control();
            self.interrupts.lock().msix.set_control(control);
        }
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.config.bars()
    }

    fn set_bar_address(&mut self, index: u8, address: u64) {
        self.config.set_bar_address(usize::from(index), address);
        if self.worker.is_some() {
            self.tie_kicks();
        }
    }

    fn mapped_bars(&self) -> Vec<BarRegion> {
        self.config.mapped_bars()
    }

    fn bar_read(&mut self, index: u8, offset: u64, data: &mut [u8]) {
        if index != 0 || self.config.command() & COMMAND_MEMORY == 0 {
            data.fill(0xff);
            return;
        }
        self.bar0_read(offset, data);
    }

    fn bar_write(&mut self, index: u8, offset: u64, data: &[u8]) {
        if index != 0 || self.config.command() & COMMAND_MEMORY == 0 {
            return;
        }
        self.bar0_write(offset, data);
    }
}

impl Pausable for VirtioPciDevice {
    /// Quiesces the worker (no handler runs from the return on), then the
    /// device model, and holds queue notifications.
    fn pause(&mut self) -> Result<(), PauseError> {
        if let Some(worker) = &self.worker {
            worker.pause();
        }
        if let Err(e) = self.device.pause() {
            if let Some(worker) = &self.worker {
                worker.resume();
            }
            return Err(e);
        }
        self.paused = true;
        Ok(())
    }

    /// Resumes the device model, then hands it the notifications that
    /// arrived while paused, in queue order (the worker its kept kicks).
    fn resume(&mut self) -> Result<(), PauseError> {
        self.paused = false;
        let result = self.device.resume();
        if let Some(worker) = &self.worker {
            worker.resume();
        }
        for queue in std::mem::take(&mut self.deferred) {
            self.notify_queue(queue);
        }
        result
    }
}

impl Drop for VirtioPciDevice {
    /// Unplug and stop: the kicks are untied and the worker joined before
    /// the device model goes.
    fn drop(&mut self) {
        self.stop_worker();
    }
}

/// The kind and version of the transport's state in a snapshot.
const STATE_KIND: &str = "virtio-pci";
const STATE_VERSION: u32 = 1;

/// What a snapshot keeps of a virtio-pci function: its configuration
/// space registers (BAR addresses, command, MSI-X control), the common
/// configuration (features, status, queue set-up), the interrupt state
/// (MSI-X table and PBA, ISR, vectors, DEVICE_NEEDS_RESET), whether the
/// device was running, and the device's own state (its queues' positions
/// among it).
#[derive(serde::Serialize, serde::Deserialize)]
struct TransportState {
    config: Vec<u8>,
    common: CommonCfg,
    interrupts: InterruptsState,
    activated: bool,
    device: DeviceState,
}

impl Snapshottable for VirtioPciDevice {
    /// Saves a paused function; refused while it runs or while a driver
    /// reset completes, and when the device model cannot save its state.
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        if !self.paused {
            return Err(StateError::NotQuiescent("the device is not paused".into()));
        }
        // A reset whose worker has ended completes here, not only at the
        // guest's next register access (which a paused guest never makes).
        if self.stopping.is_some() && !self.finish_reset() {
            return Err(StateError::NotQuiescent(
                "the driver's reset has not completed".into(),
            ));
        }
        let state = TransportState {
            config: self.config.registers(),
            common: self.common.clone(),
            interrupts: self.interrupts.state(),
            activated: self.activated,
            device: self.device.save_state()?,
        };
        DeviceState::new(STATE_KIND, STATE_VERSION, &state)
    }

    /// Restores into a fresh, paused function of the same device kind (a
    /// restored VM starts paused). A device that was running is activated
    /// again with its queues as the driver set them up, its worker started
    /// paused and its kicks tied to the restored BAR; then the device model
    /// takes its own state. Every enabled queue counts as notified, so
    /// that a notification that was held at save time is not lost (a
    /// spurious one finds nothing to do). On an error the function is left
    /// as it was: fresh.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        if !self.paused {
            return Err(StateError::NotQuiescent("the device is not paused".into()));
        }
        if self.activated || self.common.status != 0 || self.stopping.is_some() {
            return Err(StateError::NotQuiescent(
                "restore needs a function the driver has not set up".into(),
            ));
        }
        let saved: TransportState = state.decode(STATE_KIND, STATE_VERSION)?;
        let mut config = self.config.clone();
        config
            .restore_registers(&saved.config)
            .map_err(|e| StateError::Invalid(e.to_string()))?;
        let mut common = self.common.clone();
        common.restore(&saved.common).map_err(StateError::Invalid)?;
        check_consistent(
            &saved,
            self.device_features,
            message_control(&config, self.msix_cap),
        )?;
        let fresh_interrupts = self.interrupts.state();
        self.interrupts
            .restore(&saved.interrupts)
            .map_err(StateError::Invalid)?;
        let fresh_config = std::mem::replace(&mut self.config, config);
        let fresh_common = std::mem::replace(&mut self.common, common);
        let result = self.bring_back(&saved);
        if result.is_err() {
            self.stop_worker();
            // Also undoes the features acknowledged on the way.
            self.device.reset();
            self.activated = false;
            self.deferred.clear();
            self.config = fresh_config;
            self.common = fresh_common;
            // The fresh state was read from this very table a moment ago.
            let _ = self.interrupts.restore(&fresh_interrupts);
        }
        result
    }
}

/// The message control word of the MSI-X capability at `msix_cap` in
/// `config`.
fn message_control(config: &ConfigSpace, msix_cap: usize) -> u16 {
    match config.raw(msix_cap + 2, 2) {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    }
}

/// What a saved transport must agree with before anything is restored:
/// negotiated features the device offers (with VERSION_1), a running
/// device only with FEATURES_OK and DRIVER_OK, and the MSI-X enable and
/// mask bits the same in the table state as in configuration space
/// (`msix_control`, the restored registers' message control).
fn check_consistent(
    saved: &TransportState,
    device_features: u64,
    msix_control: u16,
) -> Result<(), StateError> {
    let invalid = |what: String| Err(StateError::Invalid(what));
    let status = saved.common.status;
    let features = saved.common.driver_features;
    if status & status::FEATURES_OK != 0
        && (features & !device_features != 0 || features & VIRTIO_F_VERSION_1 == 0)
    {
        return invalid(format!(
            "features {features:#x} negotiated, the device offers {device_features:#x}"
        ));
    }
    let running = status::FEATURES_OK | status::DRIVER_OK;
    if saved.activated && status & running != running {
        return invalid(format!("a running device with status {status:#x}"));
    }
    let msix = &saved.interrupts.msix;
    if msix::control_bits(msix_control) != (msix.enabled, msix.function_masked) {
        return invalid("MSI-X control differs between the table and configuration space".into());
    }
    Ok(())
}

impl VirtioPciDevice {
    /// The device side of a restore: features, activation, the device
    /// model's state and the held notifications.
    fn bring_back(&mut self, saved: &TransportState) -> Result<(), StateError> {
        if self.common.status & status::FEATURES_OK != 0 {
            self.device.ack_features(self.common.driver_features);
        }
        if saved.activated {
            // Quietly: a refused restore sends the guest nothing.
            self.try_activate().map_err(StateError::Invalid)?;
        }
        self.device.restore_state(&saved.device)?;
        if self.activated {
            let enabled: Vec<u16> = (0u16..)
                .zip(&self.common.queues)
                .filter(|(_, q)| q.enabled)
                .map(|(index, _)| index)
                .collect();
            for queue in enabled {
                self.notify_queue(queue);
            }
        }
        Ok(())
    }
}
