//! [`KvmNetwork`]: NICs as virtio-net functions over tap devices.
//!
//! Each NIC is its own virtio-net PCI function in the first free slot of
//! [`DYNAMIC_SLOTS`], backed by the tap named by `Nic::endpoint` (opened,
//! or created if absent, with `IFF_VNET_HDR`). Frames from the guest go out
//! on its queue notifications; frames for the guest are pumped by one
//! thread per NIC ([`RxPump`]) that waits for the tap to become readable.
//! The thread and the tap go when the guest has ejected the NIC (or the VM
//! stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;
use uvm_api::{Error, NetworkManager, Nic, Removal, Resource, Result, op_span};
use uvm_devices::virtio::net::{NetDevice, NetHost, RxStatus, Tap, TapError};
use vmm_sys_util::eventfd::EventFd;

use super::ids::IdTable;
use super::pmem::DYNAMIC_SLOTS;
use super::{ManagerContext, Unplug, complete_all, lock};

/// How long the pump waits before trying again when the guest has no
/// receive buffers (it also wakes when a frame arrives).
const NO_BUFFER_BACKOFF: Duration = Duration::from_millis(5);

/// The thread moving frames from a tap into the guest.
pub struct RxPump {
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn poll_two(tap: i32, stop: i32, timeout_ms: i32) -> std::io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: tap,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd structs for the call's
    // duration; both descriptors stay open while the pump runs (the tap is
    // owned by the device `NetHost` keeps alive, the eventfd by the pump).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(e);
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
}

impl RxPump {
    /// Starts pumping for `host`, named after the NIC `id`.
    pub fn start(id: &str, host: NetHost) -> std::io::Result<RxPump> {
        let fd = host
            .fd()
            .ok_or_else(|| std::io::Error::other("the NIC's backend has no file descriptor"))?;
        let stop = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let stopping = Arc::new(AtomicBool::new(false));
        let (stop2, stopping2) = (stop.clone(), stopping.clone());
        let nic = id.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("net-rx-{id}"))
            .spawn(move || {
                use std::os::fd::AsRawFd;
                let stop_fd = stop2.as_raw_fd();
                let mut timeout = -1;
                while !stopping2.load(Ordering::Acquire) {
                    match poll_two(fd, stop_fd, timeout) {
                        Ok((_, true)) => break,
                        Ok((readable, false)) => {
                            if readable || timeout >= 0 {
                                timeout = match host.process_rx() {
                                    RxStatus::Drained => -1,
                                    RxStatus::NoBuffers | RxStatus::Inactive => {
                                        NO_BUFFER_BACKOFF.as_millis() as i32
                                    }
                                };
                            }
                        }
                        Err(e) => {
                            tracing::error!(nic = %nic, "polling the tap failed: {e}; receive stops");
                            break;
                        }
                    }
                }
            })?;
        Ok(RxPump {
            stop,
            stopping,
            thread: Some(thread),
        })
    }
}

impl Drop for RxPump {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.stop.write(1) {
            tracing::error!("waking the rx pump to stop it: {e}");
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the rx pump thread panicked");
        }
    }
}

struct Attached {
    slot: u8,
    mac: [u8; 6],
    _pump: RxPump,
}

/// The network manager of one VM.
pub struct KvmNetwork {
    ctx: ManagerContext,
    nics: Arc<Mutex<Nics>>,
}

/// The NICs of a VM by id.
type Nics = IdTable<String, Attached>;

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
            nics: Arc::new(Mutex::new(IdTable::default())),
        }
    }

    pub(crate) fn do_add_nic(&self, nic: Nic) -> Result<()> {
        self.ctx.check_state()?;
        nic.validate()?;
        let mac = nic.mac.octets();
        let mut nics = lock(&self.nics);
        if nics.contains(&nic.id) {
            return Err(Error::already_exists(Resource::Network, nic.id.clone()));
        }
        if nics.all().any(|(_, a)| a.mac == mac) {
            return Err(Error::already_exists(
                Resource::Network,
                format!("MAC {}", nic.mac),
            ));
        }
        let tap = Tap::open(&nic.endpoint).map_err(|e| tap_error(&nic, e))?;
        let device = NetDevice::new(Box::new(tap), mac);
        let pump = RxPump::start(&nic.id, device.host())
            .map_err(|e| Error::io(format!("starting the receive thread of NIC {}", nic.id), e))?;
        let slot = self
            .ctx
            .hub
            .reserve_slot(DYNAMIC_SLOTS)
            .map_err(|e| self.ctx.hub_error(Resource::Network, e))?;
        nics.insert(
            nic.id.clone(),
            Attached {
                slot,
                mac,
                _pump: pump,
            },
        );
        drop(nics);
        // No manager lock across the hub: eject callbacks take it.
        let plugged = self.ctx.hub.plug(
            slot,
            &format!("virtio-net {}", nic.id),
            Box::new(device),
            None,
        );
        if let Err(e) = plugged {
            let attached = lock(&self.nics).forget(&nic.id);
            drop(attached);
            return Err(self.ctx.hub_error(Resource::Network, e));
        }
        tracing::info!(vm = %self.ctx.vm_id, id = %nic.id, endpoint = %nic.endpoint, mac = %nic.mac, slot, "NIC added");
        Ok(())
    }

    fn do_remove_nic(&self, id: &str) -> Result<Removal> {
        self.ctx.check_state()?;
        let key = id.to_owned();
        let Some(slot) = lock(&self.nics).attached(&key).map(|a| a.slot) else {
            return Err(Error::not_found(Resource::Network, id));
        };
        Unplug {
            resource: Resource::Network,
            table: |t: &mut Nics| t,
            released: |_: &mut Nics, _: &Attached| {},
        }
        .start(&self.ctx, &self.nics, key, slot, id)
    }

    /// The VM stopped: receive threads stop, pending removals complete.
    pub fn shut_down(&self) {
        let (completers, attached) = lock(&self.nics).drain();
        drop(attached);
        complete_all(completers);
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
