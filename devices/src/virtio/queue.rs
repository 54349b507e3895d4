//! Queue helpers that turn a misbehaving guest's ring into errors, never panics.

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use super::GuestMemory;

/// A ring or descriptor problem caused by the guest.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue configuration or rings are invalid.
    #[error("invalid queue: {0}")]
    Ring(virtio_queue::Error),
    /// A descriptor chain points outside guest memory or is malformed.
    #[error("invalid descriptor chain: {0}")]
    Chain(virtio_queue::Error),
}

/// Builds a ready queue from the driver's configuration, checking alignment
/// and that every ring lies in guest memory.
pub fn build_queue(
    max_size: u16,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    mem: &GuestMemory,
) -> Result<Queue, QueueError> {
    use vm_memory::GuestAddress;
    let mut q = Queue::new(max_size).map_err(QueueError::Ring)?;
    q.try_set_size(size).map_err(QueueError::Ring)?;
    q.try_set_desc_table_address(GuestAddress(desc))
        .map_err(QueueError::Ring)?;
    q.try_set_avail_ring_address(GuestAddress(avail))
        .map_err(QueueError::Ring)?;
    q.try_set_used_ring_address(GuestAddress(used))
        .map_err(QueueError::Ring)?;
    q.set_ready(true);
    if !q.is_valid(mem) {
        return Err(QueueError::Ring(virtio_queue::Error::QueueNotReady));
    }
    Ok(q)
}

/// The next available chain, if any. An avail index that runs too far ahead
/// is an error.
pub fn pop_chain<'a>(
    queue: &mut Queue,
    mem: &'a GuestMemory,
) -> Result<Option<DescriptorChain<&'a GuestMemory>>, QueueError> {
    let mut iter = queue.iter(mem).map_err(QueueError::Ring)?;
    Ok(iter.next())
}

/// Returns a chain to the driver with `len` bytes written.
pub fn add_used(
    queue: &mut Queue,
    mem: &GuestMemory,
    head: u16,
    len: u32,
) -> Result<(), QueueError> {
    queue.add_used(mem, head, len).map_err(QueueError::Ring)
}
