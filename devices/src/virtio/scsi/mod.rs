//! virtio-scsi (device type 8): one target whose LUNs 0 to 63 are
//! [`crate::scsi::ScsiLun`]s, the hcsshim controller + LUN model.
//!
//! Queues: 0 control (task management answered at once, since commands
//! complete synchronously; AN queries report no event support), 1 event,
//! 2.. request queues. Configuration: `sense_size` 96 and `cdb_size` 32
//! (driver-writable), `max_channel` 0, `max_target` 0, `max_lun` 63,
//! `max_sectors` 2048 (1 MiB transfers).
//!
//! # Wiring
//!
//! ```ignore
//! let dev = VirtioScsiDevice::new(1);
//! let host = dev.host();                       // keep: Arc-shared handle
//! host.add_lun(0, ScsiLun::new(DiskImage::open(path, ImageKind::Raw, false)?, "serial"))?;
//! let function = VirtioPciDevice::new(Box::new(dev), mem, msi, intx)?;
//! // later, from any thread, while the guest runs:
//! host.add_lun(3, disk)?;                      // RESCAN event -> guest scans LUN 3
//! let release = host.remove_lun(3)?;           // REMOVED event -> guest removes sd
//! release.on_release(move || completer.complete());
//! ```
//!
//! # Hot add and removal
//!
//! With VIRTIO_SCSI_F_HOTPLUG negotiated, [`ScsiHost::add_lun`] queues a
//! TRANSPORT_RESET event with reason RESCAN (Linux: `scsi_add_device`, or a
//! target scan for LUN 0) and [`ScsiHost::remove_lun`] one with reason
//! REMOVED (Linux: `scsi_remove_device`). An event waits for a guest
//! buffer; past 64 waiting events new ones are dropped and the next one
//! delivered carries VIRTIO_SCSI_T_EVENTS_MISSED (Linux then re-checks
//! every device and rescans the bus). Before the driver runs, changes need
//! no event: its probe scans the bus. The device holds at most one event
//! buffer per descriptor head (never more than the queue size); a head made
//! available again while held breaks the device (DEVICE_NEEDS_RESET), see
//! [`events`].
//!
//! # The release signal (two-phase removal)
//!
//! `remove_lun` detaches the disk at once (later commands to it fail with
//! LOGICAL UNIT NOT SUPPORTED; a removed LUN cannot be written after the
//! call returns). The returned [`crate::release::ReleaseSignal`] fires when the guest driver
//! re-posts the event buffer that carried the REMOVED event: Linux does that
//! at the end of its event work item, after `scsi_remove_device` returned,
//! so the guest's sd device is gone. It also fires when the event was
//! folded into EVENTS_MISSED and that buffer comes back, when the driver
//! resets the device (it rescans on re-probe), when the device is dropped,
//! and immediately if no driver with hotplug support is running. A guest
//! that never re-posts never releases: pair the wait with a timeout.

pub mod config;
pub mod control;
pub mod device;
pub mod events;
pub mod request;

pub use config::{QUEUE_SIZE, VIRTIO_ID_SCSI, VIRTIO_SCSI_F_HOTPLUG};
pub use device::{ScsiHost, VirtioScsiDevice};
