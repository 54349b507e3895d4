//! virtio-pmem (device type 27): a host file the VMM maps into guest
//! physical memory, plus a queue on which the guest asks for flushes.
//!
//! The device model ([`device`]) only knows where the region is (`start`,
//! `size` in its configuration) and the file to flush. [`image`] checks and
//! maps the file; making that mapping guest memory (a KVM memory slot over
//! it) is the VMM's job. A read-only
//! image must be mapped read-only (`PROT_READ`, a `KVM_MEM_READONLY` slot):
//! a guest store then faults as an MMIO exit the VMM refuses instead of
//! silently succeeding, and a flush of a read-only image is a no-op that
//! succeeds.
//!
//! Requests: `le32 type` (0 = FLUSH) readable, `le32 ret` writable; `ret`
//! is 0 on success and 1 (VIRTIO_PMEM_RESP_TYPE_EIO; Linux maps any
//! non-zero value to -EIO) when `fdatasync` fails or the request is bad.
//! The flush runs on the notifying thread (a vCPU or the VMM's event loop).

pub mod device;
pub mod image;

pub use device::{PmemDevice, QUEUE_SIZE, RESP_EIO, RESP_OK, VIRTIO_ID_PMEM};
pub use image::{PMEM_ALIGN, PmemError, PmemImage};
