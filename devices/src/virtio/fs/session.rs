//! One vhost-user connection to a virtio-fs backend (virtiofsd): feature
//! and protocol negotiation at connect time, then the memory table and the
//! per-ring messages of an activation.
//!
//! Message order follows the vhost-user specification: SET_OWNER,
//! GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM at connect;
//! SET_FEATURES, SET_MEM_TABLE, and per ring SET_VRING_NUM, SET_VRING_BASE,
//! SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_KICK (the backend starts the
//! ring) and SET_VRING_ENABLE at activation; GET_VRING_BASE stops a ring.
//!
//! Requests are synchronous on the caller's thread. A backend that dies
//! makes them fail at once; one that hangs without closing its socket
//! blocks the caller (the vhost crate retries interrupted and timed-out
//! reads), so only trusted backends such as virtiofsd belong here.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vmm_sys_util::eventfd::EventFd;

use super::FsError;
use super::watchdog::Watchdog;
use crate::virtio::VIRTIO_F_VERSION_1;

/// Virtio features passed through from the backend to the driver. Packed
/// rings, IOMMU translation and notification data are not supported by the
/// transport; VIRTIO_FS_F_NOTIFICATION would need a notification queue.
pub const GUEST_FEATURES: u64 =
    VIRTIO_F_VERSION_1 | (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX);

/// Protocol features this frontend uses when the backend offers them.
const WANTED_PROTOCOL: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// Where a ring lives, in the frontend's address space.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Size the driver chose.
    pub size: u16,
    /// Maximum size the device declared.
    pub max_size: u16,
    /// Descriptor table address (frontend virtual).
    pub desc: u64,
    /// Available ring address (frontend virtual).
    pub avail: u64,
    /// Used ring address (frontend virtual).
    pub used: u64,
    /// Next available index the backend starts from.
    pub base: u16,
}

/// A negotiated vhost-user connection.
pub struct Session {
    /// Declared first: stopped before the socket closes.
    watchdog: Watchdog,
    frontend: Frontend,
    backend_features: u64,
    protocol: VhostUserProtocolFeatures,
    num_queues: usize,
}

impl Session {
    /// Connects to the backend at `path` and negotiates for `num_queues`
    /// queues. Every request from then on (this negotiation, activation,
    /// pause) fails once the backend leaves it unanswered for `timeout`:
    /// a hung daemon costs its caller that long, not forever.
    pub fn connect(path: &Path, num_queues: usize, timeout: Duration) -> Result<Self, FsError> {
        let mut frontend =
            Frontend::connect(path, num_queues as u64).map_err(|source| FsError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let watchdog =
            Watchdog::start(frontend.as_raw_fd(), timeout).map_err(|source| FsError::Fd {
                what: "the vhost-user watchdog",
                source,
            })?;
        let armed = watchdog.arm("the vhost-user negotiation");
        frontend.set_owner().map_err(protocol("SET_OWNER"))?;
        let backend_features = frontend.get_features().map_err(protocol("GET_FEATURES"))?;
        if backend_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(FsError::MissingFeature("VIRTIO_F_VERSION_1"));
        }
        let mut protocol_features = VhostUserProtocolFeatures::empty();
        if backend_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let offered = frontend
                .get_protocol_features()
                .map_err(protocol("GET_PROTOCOL_FEATURES"))?;
            protocol_features = offered & WANTED_PROTOCOL;
            frontend
                .set_protocol_features(protocol_features)
                .map_err(protocol("SET_PROTOCOL_FEATURES"))?;
            if protocol_features.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                // Every request then waits for the backend's verdict, so a
                // refused request fails here instead of silently later.
                frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
            if protocol_features.contains(VhostUserProtocolFeatures::MQ) {
                let supported = frontend
                    .get_queue_num()
                    .map_err(protocol("GET_QUEUE_NUM"))?;
                if supported < num_queues as u64 {
                    return Err(FsError::TooFewQueues {
                        wanted: num_queues as u64,
                        supported,
                    });
                }
            }
        }
        tracing::debug!(
            path = %path.display(),
            backend_features = format_args!("{backend_features:#x}"),
            protocol_features = format_args!("{:#x}", protocol_features.bits()),
            "vhost-user backend connected"
        );
        drop(armed);
        Ok(Session {
            watchdog,
            frontend,
            backend_features,
            protocol: protocol_features,
            num_queues,
        })
    }

    /// Number of queues negotiated for.
    pub fn num_queues(&self) -> usize {
        self.num_queues
    }

    /// The virtio features to offer the driver.
    pub fn guest_features(&self) -> u64 {
        self.backend_features & GUEST_FEATURES
    }

    /// Whether VHOST_USER_F_PROTOCOL_FEATURES is in use (rings then start
    /// disabled and need SET_VRING_ENABLE).
    fn protocol_features_on(&self) -> bool {
        self.backend_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0
    }

    /// The protocol features in use.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol
    }

    /// Whether the backend overran the time limit and the session was
    /// closed.
    pub fn timed_out(&self) -> bool {
        self.watchdog.fired()
    }

    /// The socket, for hang-up detection.
    pub fn socket_fd(&self) -> RawFd {
        self.frontend.as_raw_fd()
    }

    /// SET_FEATURES with the driver's features (plus
    /// VHOST_USER_F_PROTOCOL_FEATURES when the backend offers it).
    pub fn set_features(&self, driver_features: u64) -> Result<(), FsError> {
        let mut features = driver_features & self.guest_features();
        if self.protocol_features_on() {
            features |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        let _armed = self.watchdog.arm("SET_FEATURES");
        self.frontend
            .set_features(features)
            .map_err(protocol("SET_FEATURES"))
    }

    /// SET_MEM_TABLE.
    pub fn set_mem_table(&self, table: &[VhostUserMemoryRegionInfo]) -> Result<(), FsError> {
        // The reply payload exists only in postcopy mode, unused here.
        let _armed = self.watchdog.arm("SET_MEM_TABLE");
        self.frontend
            .set_mem_table(table)
            .map(drop)
            .map_err(protocol("SET_MEM_TABLE"))
    }

    /// Configures ring `index` and starts it: the backend processes it from
    /// the next kick and signals used buffers on `call`.
    pub fn start_ring(
        &mut self,
        index: usize,
        ring: &RingConfig,
        call: &EventFd,
        kick: &EventFd,
    ) -> Result<(), FsError> {
        let _armed = self.watchdog.arm("starting a ring");
        let f = &mut self.frontend;
        f.set_vring_num(index, ring.size)
            .map_err(protocol("SET_VRING_NUM"))?;
        f.set_vring_base(index, ring.base)
            .map_err(protocol("SET_VRING_BASE"))?;
        let addrs = VringConfigData {
            queue_max_size: ring.max_size,
            queue_size: ring.size,
            flags: 0,
            desc_table_addr: ring.desc,
            used_ring_addr: ring.used,
            avail_ring_addr: ring.avail,
            log_addr: None,
        };
        f.set_vring_addr(index, &addrs)
            .map_err(protocol("SET_VRING_ADDR"))?;
        f.set_vring_call(index, call)
            .map_err(protocol("SET_VRING_CALL"))?;
        f.set_vring_kick(index, kick)
            .map_err(protocol("SET_VRING_KICK"))?;
        if self.protocol_features_on() {
            self.frontend
                .set_vring_enable(index, true)
                .map_err(protocol("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// Stops ring `index` (GET_VRING_BASE); returns the backend's next
    /// available index.
    pub fn stop_ring(&mut self, index: usize) -> Result<u32, FsError> {
        let _armed = self.watchdog.arm("GET_VRING_BASE");
        self.frontend
            .get_vring_base(index)
            .map_err(protocol("GET_VRING_BASE"))
    }
}

/// Maps a frontend error to [`FsError::Protocol`] for `request`.
fn protocol(request: &'static str) -> impl FnOnce(vhost::Error) -> FsError {
    move |source| FsError::Protocol { request, source }
}
