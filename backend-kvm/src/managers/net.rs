//! [`KvmNetwork`]: NICs as virtio-net functions over tap devices.
//!
//! Each NIC is its own virtio-net PCI function in the first free slot of
//! [`slots::DYNAMIC`], backed by the tap named by `Nic::endpoint` (opened,
//! or created if absent, with `IFF_VNET_HDR`). Frames from the guest go out
//! on its queue notifications; frames for the guest are moved by a receive
//! pump ([`RxPump`]) that parks while the guest has no receive buffers and
//! is woken through the tap's [`WakeOnRecv`] wrapper when the device
//! receives on a guest notification. The pump is kept with the NIC's entry
//! and the tap with the device: both go when the guest has ejected the NIC
//! (or the VM stopped).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::Instrument;
use uvm_api::{DeviceTable, Error, NetworkManager, Nic, Removal, Resource, Result, op_span};
use uvm_devices::virtio::net::{NetDevice, RxPump, RxWaker, Tap, TapError, WakeOnRecv};

use super::context::ManagerContext;
use super::removal::Unplug;
use crate::pci::slots;

struct Attached {
    slot: u8,
    mac: [u8; 6],
    /// Stopped and joined when the entry goes.
    _rx: RxPump,
}

/// The network manager of one VM.
pub struct KvmNetwork {
    ctx: ManagerContext,
    nics: Arc<Mutex<Nics>>,
}

/// The NICs of a VM by id.
type Nics = DeviceTable<String, Attached>;

fn tap_error(nic: &Nic, e: TapError) -> Error {
    match e {
        TapError::Name(name) => Error::invalid_argument(
            "endpoint",
            format!("{name:?} is not a valid tap device name"),
        ),
        TapError::Open(source) => Error::io("opening /dev/net/tun", source),
        TapError::Ioctl { what, source } => {
            Error::io(format!("{what} for tap {}", nic.endpoint), source)
        }
    }
}

/// How long an add waits for a tap another VM is still closing.
const TAP_BUSY_WAIT: Duration = Duration::from_secs(3);
/// Pause between attempts while a tap is busy.
const TAP_BUSY_RETRY: Duration = Duration::from_millis(20);

/// Whether `e` says the tap is attached elsewhere (`EBUSY` from
/// `TUNSETIFF`): a VM that is still stopping may hold it for a moment.
fn tap_busy(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
}

/// Runs `attempt` (which opens taps) until it succeeds, fails for another
/// reason than a busy tap, or [`TAP_BUSY_WAIT`] has passed.
pub(crate) async fn retry_while_tap_busy<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + TAP_BUSY_WAIT;
    loop {
        match attempt() {
            Err(e) if tap_busy(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!("tap busy; retrying");
                tokio::time::sleep(TAP_BUSY_RETRY).await;
            }
            result => return result,
        }
    }
}

impl KvmNetwork {
    /// The manager for the VM of `ctx`.
    pub fn new(ctx: ManagerContext) -> Self {
        KvmNetwork {
            ctx,
            nics: Arc::new(Mutex::new(DeviceTable::default())),
        }
    }

    pub(crate) fn do_add_nic(&self, nic: Nic) -> Result<()> {
        self.ctx.check_state()?;
        nic.validate()?;
        let slot = self
            .ctx
            .hub
            .reserve_slot(slots::DYNAMIC)
            .map_err(|e| self.ctx.hub_error(Resource::Network, e))?;
        let device = self.open(&nic, slot);
        let device = match device {
            Ok(device) => device,
            Err(e) => {
                self.ctx.hub.unreserve(slot);
                return Err(e);
            }
        };
        let plugged = self.ctx.hub.plug(
            slot,
            &format!("virtio-net {}", nic.id),
            Box::new(device),
            None,
        );
        if let Err(e) = plugged {
            self.nics.lock().take_attached(&nic.id);
            return Err(self.ctx.hub_error(Resource::Network, e));
        }
        tracing::info!(vm = %self.ctx.vm_id, id = %nic.id, endpoint = %nic.endpoint, mac = %nic.mac, slot, "NIC added");
        Ok(())
    }

    /// Takes `nic`'s id and MAC for `slot` and opens its tap; returns the
    /// device (with its receive pump running).
    fn open(&self, nic: &Nic, slot: u8) -> Result<NetDevice> {
        let mac = nic.mac.octets();
        let mut nics = self.nics.lock();
        if nics.contains(&nic.id) {
            return Err(Error::already_exists(Resource::Network, nic.id.clone()));
        }
        if nics.iter_visible().any(|(_, a)| a.mac == mac) {
            return Err(Error::already_exists(
                Resource::Network,
                format!("MAC {}", nic.mac),
            ));
        }
        // Opened under the lock: a racing add of the same id gets
        // AlreadyExists, not the tap's EBUSY.
        let tap = Tap::open(&nic.endpoint).map_err(|e| tap_error(nic, e))?;
        let rx_error = |e| Error::io(format!("starting the receive thread of NIC {}", nic.id), e);
        let waker = RxWaker::new().map_err(rx_error)?;
        let device = NetDevice::new(Box::new(WakeOnRecv::new(Box::new(tap), waker.clone())), mac);
        let host = device.host();
        let fd = host
            .fd()
            .ok_or_else(|| rx_error(std::io::Error::other("the tap has no file descriptor")))?;
        let rx = RxPump::start_with_waker(&nic.id, fd, waker, move || host.process_rx())
            .map_err(rx_error)?;
        let attached = Attached { slot, mac, _rx: rx };
        if nics.insert(nic.id.clone(), attached).is_err() {
            return Err(Error::already_exists(Resource::Network, nic.id.clone()));
        }
        Ok(device)
    }

    fn do_remove_nic(&self, id: &str) -> Result<Removal> {
        self.ctx.check_state()?;
        let key = id.to_owned();
        let Some(slot) = self.nics.lock().attached(&key).map(|a| a.slot) else {
            return Err(Error::not_found(Resource::Network, id));
        };
        Unplug {
            resource: Resource::Network,
            table: |t: &mut Nics| t,
            released: |_: &mut Nics, _: &Attached| {},
        }
        .start(&self.nics, key, id, || {
            self.ctx
                .hub
                .unplug(slot)
                .map_err(|e| self.ctx.hub_error(Resource::Network, e))
        })
    }

    /// The VM stopped: receive threads stop, pending removals complete.
    pub fn shut_down(&self) {
        let drained = self.nics.lock().drain();
        drained.complete();
    }
}

#[async_trait]
impl NetworkManager for KvmNetwork {
    async fn add_nic(&self, nic: Nic) -> Result<()> {
        let span = op_span(&self.ctx.vm_id, "network add_nic");
        retry_while_tap_busy(|| self.do_add_nic(nic.clone()))
            .instrument(span)
            .await
    }

    async fn remove_nic(&self, id: &str) -> Result<Removal> {
        let span = op_span(&self.ctx.vm_id, "network remove_nic");
        async { self.do_remove_nic(id) }.instrument(span).await
    }
}
