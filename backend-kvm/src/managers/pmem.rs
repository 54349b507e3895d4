//! [`KvmVpmem`]: VPMem devices as virtio-pmem functions.
//!
//! Each device is its own virtio-pmem PCI function in the first free slot
//! from [`DYNAMIC_SLOTS`]; its image file is mapped (shared, so guest
//! writes and the guest's flushes reach the file; read-only images are
//! mapped read-only and given to KVM as a read-only memory slot) into the
//! device memory window above guest RAM ([`crate::arch::layout::device_memory_base`]),
//! at a 2 MiB aligned address. Images must be raw, non-empty and a
//! multiple of 2 MiB long (the granularity Linux maps device memory in);
//! other formats are refused (`InvalidArgument`, argument `format`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::Instrument;
use uvm_api::{
    Error, ImageFormat, Removal, Resource, Result, VpmemController, VpmemDevice, VpmemManager,
    op_span,
};
use uvm_devices::virtio::pmem::PmemDevice;
use vm_memory::FileOffset;
use vm_memory::mmap::MmapRegion;

use super::ids::IdTable;
use super::{ManagerContext, Unplug, complete_all, lock};
use crate::arch::layout;
use crate::pci::memslots::ExtraMemory;

/// Slots VPMem devices and NICs take (after the SCSI controllers).
pub const DYNAMIC_SLOTS: std::ops::RangeInclusive<u8> = 6..=31;
/// Alignment and size granularity of device memory.
pub const PMEM_ALIGN: u64 = 2 << 20;

struct Mapped {
    slot: u8,
    guest_address: u64,
}

struct PmemState {
    controller: Option<VpmemController>,
    devices: IdTable<u32, Mapped>,
    /// Guest-physical ranges in use: start -> length.
    window_used: BTreeMap<u64, u64>,
}

/// The VPMem manager of one VM.
pub struct KvmVpmem {
    ctx: ManagerContext,
    window: (u64, u64),
    state: Arc<Mutex<PmemState>>,
}

/// The lowest `len`-byte hole in `[start, end)` not covered by `used`.
fn first_fit(used: &BTreeMap<u64, u64>, (start, end): (u64, u64), len: u64) -> Option<u64> {
    let mut candidate = start;
    for (&s, &l) in used {
        if candidate.checked_add(len)? <= s {
            break;
        }
        candidate = candidate.max(s.checked_add(l)?);
    }
    (candidate.checked_add(len)? <= end).then_some(candidate)
}

impl KvmVpmem {
    /// The manager for the VM of `ctx` with `ram_bytes` of guest memory.
    pub fn new(ctx: ManagerContext, ram_bytes: u64) -> Self {
        KvmVpmem {
            ctx,
            window: (
                layout::device_memory_base(ram_bytes),
                layout::DEVICE_MEMORY_END,
            ),
            state: Arc::new(Mutex::new(PmemState {
                controller: None,
                devices: IdTable::default(),
                window_used: BTreeMap::new(),
            })),
        }
    }

    pub(crate) fn do_add_controller(&self, controller: VpmemController) -> Result<()> {
        self.ctx.check_state()?;
        let mut state = lock(&self.state);
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
        let mut state = lock(&self.state);
        let Some(controller) = state.controller else {
            return Err(Error::not_found(Resource::VPMem, "controller"));
        };
        if device.id >= controller.max_devices {
            return Err(Error::invalid_argument(
                "id",
                format!(
                    "slot {} is not below the controller's max_devices {}",
                    device.id, controller.max_devices
                ),
            ));
        }
        let path = &device.path;
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(Error::invalid_argument(
                "path",
                format!("{} is not a regular file", path.display()),
            ));
        }
        let size = meta.len();
        if size > controller.max_size_bytes {
            return Err(Error::invalid_argument(
                "path",
                format!(
                    "{} is {size} bytes, more than the controller's max_size_bytes {}",
                    path.display(),
                    controller.max_size_bytes
                ),
            ));
        }
        if size == 0 || size % PMEM_ALIGN != 0 {
            return Err(Error::invalid_argument(
                "path",
                format!(
                    "{} is {size} bytes; VPMem images must be a non-zero multiple of {PMEM_ALIGN} bytes",
                    path.display()
                ),
            ));
        }
        if state.devices.contains(&device.id) {
            return Err(Error::already_exists(
                Resource::VPMem,
                device.id.to_string(),
            ));
        }
        let guest_address = first_fit(&state.window_used, self.window, size).ok_or_else(|| {
            Error::LimitReached {
                resource: Resource::VPMem,
                limit: format!(
                    "the device memory window [{:#x}, {:#x})",
                    self.window.0, self.window.1
                ),
            }
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(!device.read_only)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let flush_file = file
            .try_clone()
            .map_err(|e| Error::io(format!("duplicating the fd of {}", path.display()), e))?;
        let len = usize::try_from(size)
            .map_err(|_| Error::invalid_argument("path", "image too large for this host"))?;
        let prot = if device.read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let region: MmapRegion<()> = MmapRegion::build(
            Some(FileOffset::new(file, 0)),
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
        )
        .map_err(|e| {
            Error::io(
                format!("mapping {}", path.display()),
                std::io::Error::other(e),
            )
        })?;
        let memory = ExtraMemory {
            guest_address,
            host_address: region.as_ptr() as u64,
            len: size,
            read_only: device.read_only,
            owner: Box::new(region),
        };
        let slot = self
            .ctx
            .hub
            .reserve_slot(DYNAMIC_SLOTS)
            .map_err(|e| self.ctx.hub_error(Resource::VPMem, e))?;
        state.window_used.insert(guest_address, size);
        state.devices.insert(
            device.id,
            Mapped {
                slot,
                guest_address,
            },
        );
        drop(state);
        // No manager lock across the hub: eject callbacks take it.
        let model = PmemDevice::new(flush_file, device.read_only, guest_address, size);
        let plugged = self.ctx.hub.plug(
            slot,
            &format!("virtio-pmem {}", device.id),
            Box::new(model),
            Some(memory),
        );
        if let Err(e) = plugged {
            let mut state = lock(&self.state);
            state.devices.forget(&device.id);
            state.window_used.remove(&guest_address);
            return Err(self.ctx.hub_error(Resource::VPMem, e));
        }
        tracing::info!(vm = %self.ctx.vm_id, id = device.id, slot, guest_address, size, read_only = device.read_only, "VPMem device added");
        Ok(())
    }

    fn do_remove_device(&self, id: u32) -> Result<Removal> {
        self.ctx.check_state()?;
        let Some(slot) = lock(&self.state).devices.attached(&id).map(|m| m.slot) else {
            return Err(Error::not_found(Resource::VPMem, id.to_string()));
        };
        Unplug {
            resource: Resource::VPMem,
            table: |s: &mut PmemState| &mut s.devices,
            released: |s: &mut PmemState, mapped: &Mapped| {
                s.window_used.remove(&mapped.guest_address);
            },
        }
        .start(&self.ctx, &self.state, id, slot, &id.to_string())
    }

    /// The VM stopped: every pending removal completes.
    pub fn shut_down(&self) {
        let (completers, _) = {
            let mut state = lock(&self.state);
            state.window_used.clear();
            state.devices.drain()
        };
        complete_all(completers);
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
    use super::*;

    #[test]
    fn first_fit_fills_holes_in_order() {
        let mut used = BTreeMap::new();
        let w = (0x1000, 0x10000);
        assert_eq!(first_fit(&used, w, 0x2000), Some(0x1000));
        used.insert(0x1000, 0x2000);
        used.insert(0x5000, 0x1000);
        assert_eq!(first_fit(&used, w, 0x2000), Some(0x3000));
        assert_eq!(first_fit(&used, w, 0x3000), Some(0x6000));
        assert_eq!(first_fit(&used, w, 0x10000), None);
    }
}
