//! [`KvmVpmem`]: VPMem devices as virtio-pmem functions.
//!
//! Each device is its own virtio-pmem PCI function in the first free slot
//! of [`slots::DYNAMIC`]; its image ([`PmemImage`]: checked, mapped shared,
//! read-only images mapped read-only and given to KVM as a read-only
//! memory slot) appears in the device memory window above guest RAM
//! ([`DeviceWindow`]) at a 2 MiB aligned address. The contract's rules for
//! a device against its controller come from
//! [`uvm_api::VpmemDevice::check_against`]; the kvm backend adds that
//! images are raw, non-empty and a multiple of 2 MiB long (the granularity
//! Linux maps device memory in). Other formats are refused
//! (`InvalidArgument`, argument `format`).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::Instrument;
use uvm_api::{
    DeviceTable, Error, ImageFormat, Removal, Resource, Result, VpmemController, VpmemDevice,
    VpmemManager, op_span,
};
use uvm_devices::virtio::pmem::{PmemError, PmemImage};

use super::context::ManagerContext;
use super::removal::Unplug;
use crate::device_window::DeviceWindow;
use crate::pci::memslots::{ExtraMemory, MappingOwner};
use crate::pci::slots;

struct Mapped {
    slot: u8,
    guest_address: u64,
}

struct PmemState {
    controller: Option<VpmemController>,
    devices: DeviceTable<u32, Mapped>,
    window: DeviceWindow,
}

/// The VPMem manager of one VM.
pub struct KvmVpmem {
    ctx: ManagerContext,
    state: Arc<Mutex<PmemState>>,
}

fn image_error(e: PmemError) -> Error {
    match e {
        PmemError::Metadata { path, source } => {
            Error::io(format!("reading metadata of {}", path.display()), source)
        }
        e @ (PmemError::NotRegularFile(_) | PmemError::BadLength { .. }) => {
            Error::invalid_argument("path", e.to_string())
        }
        PmemError::Io { what, path, source } => {
            Error::io(format!("{what} {}", path.display()), source)
        }
    }
}

/// Opens `device`'s image once and checks that opened file (type, the kvm
/// backend's length rules, the controller's `max_size_bytes`): the fd
/// checked is the fd mapped, so swapping the path after
/// [`VpmemDevice::check_against`] (which reads the path's metadata for
/// the contract's error order) gains nothing.
fn open_image(device: &VpmemDevice, controller: &VpmemController) -> Result<PmemImage> {
    let image = PmemImage::open(&device.path, device.read_only).map_err(image_error)?;
    if image.len() > controller.max_size_bytes {
        return Err(Error::invalid_argument(
            "path",
            format!(
                "{} is {} bytes, more than the controller's max_size_bytes {}",
                device.path.display(),
                image.len(),
                controller.max_size_bytes
            ),
        ));
    }
    Ok(image)
}

impl KvmVpmem {
    /// The manager for the VM of `ctx` with `ram_bytes` of guest memory.
    pub fn new(ctx: ManagerContext, ram_bytes: u64) -> Self {
        KvmVpmem {
            ctx,
            state: Arc::new(Mutex::new(PmemState {
                controller: None,
                devices: DeviceTable::default(),
                window: DeviceWindow::for_ram(ram_bytes),
            })),
        }
    }

    pub(crate) fn do_add_controller(&self, controller: VpmemController) -> Result<()> {
        self.ctx.check_state()?;
        let mut state = self.state.lock();
        if state.controller.is_some() {
            return Err(Error::AlreadySet {
                what: "the VPMem controller".to_owned(),
            });
        }
        controller.validate()?;
        state.controller = Some(controller);
        Ok(())
    }

    pub(crate) fn do_add_device(&self, device: VpmemDevice) -> Result<()> {
        self.ctx.check_state()?;
        device.validate()?;
        if device.format != ImageFormat::Raw {
            return Err(Error::invalid_argument(
                "format",
                format!(
                    "{:?} images are not supported by the kvm backend (raw is)",
                    device.format
                ),
            ));
        }
        let Some(controller) = self.state.lock().controller else {
            return Err(Error::not_found(Resource::VPMem, "controller"));
        };
        device.check_against(&controller)?;
        let image = open_image(&device, &controller)?;
        if self.state.lock().devices.contains(&device.id) {
            return Err(Error::already_exists(
                Resource::VPMem,
                device.id.to_string(),
            ));
        }
        let slot = self
            .ctx
            .hub
            .reserve_slot(slots::DYNAMIC)
            .map_err(|e| self.ctx.hub_error(Resource::VPMem, e))?;
        let placed = self.place(device.id, slot, image.len());
        let guest_address = match placed {
            Ok(address) => address,
            Err(e) => {
                self.ctx.hub.unreserve(slot);
                return Err(e);
            }
        };
        let plugged = image
            .device(guest_address)
            .map_err(image_error)
            .and_then(|model| {
                let memory = ExtraMemory {
                    guest_address,
                    host_address: image.host_address(),
                    len: image.len(),
                    read_only: image.read_only(),
                    owner: MappingOwner::new(Box::new(image)),
                };
                self.ctx
                    .hub
                    .plug(
                        slot,
                        &format!("virtio-pmem {}", device.id),
                        Box::new(model),
                        Some(memory),
                    )
                    .map_err(|e| self.ctx.hub_error(Resource::VPMem, e))
            });
        if let Err(e) = plugged {
            let mut state = self.state.lock();
            state.devices.take_attached(&device.id);
            state.window.free(guest_address);
            return Err(e);
        }
        tracing::info!(vm = %self.ctx.vm_id, id = device.id, slot, guest_address, read_only = device.read_only, "VPMem device added");
        Ok(())
    }

    /// Takes the id and a guest range of `len` bytes for device `id` in
    /// `slot`; returns the range's start.
    fn place(&self, id: u32, slot: u8, len: u64) -> Result<u64> {
        let mut state = self.state.lock();
        if state.devices.contains(&id) {
            return Err(Error::already_exists(Resource::VPMem, id.to_string()));
        }
        let Some(guest_address) = state.window.allocate(len) else {
            let (start, end) = state.window.bounds();
            return Err(Error::LimitReached {
                resource: Resource::VPMem,
                limit: format!("the device memory window [{start:#x}, {end:#x})"),
            });
        };
        let mapped = Mapped {
            slot,
            guest_address,
        };
        if state.devices.insert(id, mapped).is_err() {
            state.window.free(guest_address);
            return Err(Error::already_exists(Resource::VPMem, id.to_string()));
        }
        Ok(guest_address)
    }

    fn do_remove_device(&self, id: u32) -> Result<Removal> {
        self.ctx.check_state()?;
        let Some(slot) = self.state.lock().devices.attached(&id).map(|m| m.slot) else {
            return Err(Error::not_found(Resource::VPMem, id.to_string()));
        };
        Unplug {
            resource: Resource::VPMem,
            table: |s: &mut PmemState| &mut s.devices,
            released: |s: &mut PmemState, mapped: &Mapped| s.window.free(mapped.guest_address),
        }
        .start(&self.state, id, &id.to_string(), || {
            self.ctx
                .hub
                .unplug(slot)
                .map_err(|e| self.ctx.hub_error(Resource::VPMem, e))
        })
    }

    /// The VM stopped: every pending removal completes.
    pub fn shut_down(&self) {
        let drained = {
            let mut state = self.state.lock();
            state.window.clear();
            state.devices.drain()
        };
        drained.complete();
    }
}

#[async_trait]
impl VpmemManager for KvmVpmem {
    async fn add_controller(&self, controller: VpmemController) -> Result<()> {
        let span = op_span(&self.ctx.vm_id, "vpmem add_controller");
        async { self.do_add_controller(controller) }
            .instrument(span)
            .await
    }

    async fn add_device(&self, device: VpmemDevice) -> Result<()> {
        let span = op_span(&self.ctx.vm_id, "vpmem add_device");
        async { self.do_add_device(device) }.instrument(span).await
    }

    async fn remove_device(&self, id: u32) -> Result<Removal> {
        let span = op_span(&self.ctx.vm_id, "vpmem remove_device");
        async { self.do_remove_device(id) }.instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use uvm_devices::virtio::pmem::PMEM_ALIGN;

    use super::*;

    fn device(path: &Path) -> VpmemDevice {
        VpmemDevice {
            id: 0,
            path: path.to_path_buf(),
            read_only: true,
            format: ImageFormat::Raw,
        }
    }

    const CONTROLLER: VpmemController = VpmemController {
        max_devices: 1,
        max_size_bytes: PMEM_ALIGN,
    };

    #[test]
    fn the_opened_image_is_checked_against_the_controller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(PMEM_ALIGN)
            .unwrap();
        let image = open_image(&device(&path), &CONTROLLER).unwrap();
        assert_eq!(image.len(), PMEM_ALIGN);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(2 * PMEM_ALIGN)
            .unwrap();
        let err = open_image(&device(&path), &CONTROLLER).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { ref argument, .. } if argument == "path"),
            "{err:?}"
        );
    }

    #[test]
    fn a_fifo_image_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(open_image(&device(&path), &CONTROLLER).map(|i| i.len()));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a FIFO image blocked");
        assert!(
            matches!(r, Err(Error::InvalidArgument { ref argument, .. }) if argument == "path"),
            "{r:?}"
        );
    }
}
