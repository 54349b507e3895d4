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
    /// A chain's data buffers cannot be reached for direct file I/O.
    #[error("descriptor chain buffers: {0}")]
    Buffers(#[from] super::chain_io::ChainIoError),
}

/// Where a queue stands, as a snapshot keeps it: the next available entry
/// the device will read and the next used entry it will write. Everything
/// else about a queue is the driver's set-up, which the transport keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuePosition {
    /// Index of the next available-ring entry to read.
    pub next_avail: u16,
    /// Index of the next used-ring entry to write.
    pub next_used: u16,
}

impl QueuePosition {
    /// Where `queue` stands now.
    pub fn of(queue: &Queue) -> Self {
        QueuePosition {
            next_avail: queue.next_avail(),
            next_used: queue.next_used(),
        }
    }

    /// Whether a queue of `size` entries can stand here: the device has
    /// used no more than it read, and no more than `size` buffers apart.
    pub fn check(&self, size: u16) -> Result<(), String> {
        let in_flight = self.next_avail.wrapping_sub(self.next_used);
        if in_flight > size {
            return Err(format!(
                "{in_flight} buffers in flight on a queue of {size}"
            ));
        }
        Ok(())
    }

    /// Moves `queue` to this position (after [`QueuePosition::check`]).
    pub fn apply(&self, queue: &mut Queue) {
        queue.set_next_avail(self.next_avail);
        queue.set_next_used(self.next_used);
    }
}

/// A device's queues by index (the shape each device keeps them in), so
/// that run state can be saved and restored the same way for every device.
pub trait QueueSet {
    /// How many queues the device declares.
    fn count(&self) -> u16;
    /// Queue `index`, if the driver enabled it.
    fn queue(&self, index: u16) -> Option<&Queue>;
    /// Queue `index`, if the driver enabled it.
    fn queue_mut(&mut self, index: u16) -> Option<&mut Queue>;
}

/// A device with a single queue keeps it as is.
impl QueueSet for Queue {
    fn count(&self) -> u16 {
        1
    }

    fn queue(&self, index: u16) -> Option<&Queue> {
        (index == 0).then_some(self)
    }

    fn queue_mut(&mut self, index: u16) -> Option<&mut Queue> {
        (index == 0).then_some(self)
    }
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
///
/// With `VIRTIO_F_EVENT_IDX` (virtio 1.x 2.7.10) the driver kicks only when
/// its avail index passes the `avail_event` the device last wrote. So when
/// the ring is found empty the device publishes where it stopped
/// (`enable_notification`) and looks once more, in case the driver added a
/// chain meanwhile: every loop that pops until `None` leaves the driver
/// kicking for its next chain, and a device that stops early (a receive
/// queue with buffers to spare) needs no kick.
pub fn pop_chain<'a>(
    queue: &mut Queue,
    mem: &'a GuestMemory,
) -> Result<Option<DescriptorChain<&'a GuestMemory>>, QueueError> {
    if let Some(chain) = queue.iter(mem).map_err(QueueError::Ring)?.next() {
        return Ok(Some(chain));
    }
    if !queue.event_idx_enabled() || !queue.enable_notification(mem).map_err(QueueError::Ring)? {
        return Ok(None);
    }
    Ok(queue.iter(mem).map_err(QueueError::Ring)?.next())
}

/// Whether the driver wants an interrupt for the chains returned since the
/// last call: with `VIRTIO_F_EVENT_IDX`, only once the used index passes
/// the driver's `used_event`; always without it, or when the ring cannot
/// be read (an extra interrupt is harmless, a missing one stalls).
pub fn wants_interrupt(queue: &mut Queue, mem: &GuestMemory) -> bool {
    queue.needs_notification(mem).unwrap_or(true)
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

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    const SIZE: u16 = 4;
    const DESC: u64 = 0x0;
    const AVAIL: u64 = 0x1000;
    const USED: u64 = 0x2000;

    /// A driver's side of one split ring, written by hand (the layout of
    /// virtio 1.x 2.7: the avail ring ends with `used_event`, the used ring
    /// with `avail_event`).
    struct Driver {
        mem: GuestMemory,
    }

    impl Driver {
        fn new() -> (Driver, Queue) {
            let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
            let q = build_queue(SIZE, SIZE, DESC, AVAIL, USED, &mem).unwrap();
            (Driver { mem }, q)
        }

        /// Puts descriptor `head` (a 16-byte buffer) on the avail ring.
        fn post(&self, head: u16) {
            let desc = DESC + u64::from(head) * 16;
            self.mem
                .write_obj(0x8000 + u64::from(head) * 0x100, GuestAddress(desc))
                .unwrap();
            self.mem.write_obj(16u32, GuestAddress(desc + 8)).unwrap();
            let idx: u16 = self.mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
            let slot = AVAIL + 4 + 2 * u64::from(idx % SIZE);
            self.mem.write_obj(head, GuestAddress(slot)).unwrap();
            self.mem
                .write_obj(idx.wrapping_add(1), GuestAddress(AVAIL + 2))
                .unwrap();
        }

        fn avail_event(&self) -> u16 {
            let at = USED + 4 + 8 * u64::from(SIZE);
            self.mem.read_obj(GuestAddress(at)).unwrap()
        }

        fn set_used_event(&self, value: u16) {
            let at = AVAIL + 4 + 2 * u64::from(SIZE);
            self.mem.write_obj(value, GuestAddress(at)).unwrap();
        }
    }

    #[test]
    fn with_event_idx_a_dry_ring_asks_for_the_next_kick() {
        let (driver, mut q) = Driver::new();
        let mem = &driver.mem;
        q.set_event_idx(true);
        driver.post(0);
        driver.post(1);
        assert!(pop_chain(&mut q, mem).unwrap().is_some());
        assert_eq!(driver.avail_event(), 0, "not published while chains wait");
        assert!(pop_chain(&mut q, mem).unwrap().is_some());
        assert!(pop_chain(&mut q, mem).unwrap().is_none());
        assert_eq!(
            driver.avail_event(),
            2,
            "the driver must kick for its third chain"
        );
        driver.post(2);
        assert!(pop_chain(&mut q, mem).unwrap().is_some());
    }

    #[test]
    fn without_event_idx_nothing_is_published() {
        let (driver, mut q) = Driver::new();
        let mem = &driver.mem;
        driver.post(0);
        assert!(pop_chain(&mut q, mem).unwrap().is_some());
        assert!(pop_chain(&mut q, mem).unwrap().is_none());
        assert_eq!(driver.avail_event(), 0);
        add_used(&mut q, mem, 0, 0).unwrap();
        driver.set_used_event(7);
        assert!(wants_interrupt(&mut q, mem), "always, without EVENT_IDX");
    }

    #[test]
    fn with_event_idx_interrupts_follow_the_drivers_used_event() {
        let (driver, mut q) = Driver::new();
        let mem = &driver.mem;
        q.set_event_idx(true);
        for head in 0..3 {
            driver.post(head);
        }
        // The driver wants an interrupt once the used index passes 1.
        driver.set_used_event(1);
        let use_next = |q: &mut Queue| {
            let head = pop_chain(q, mem).unwrap().unwrap().head_index();
            add_used(q, mem, head, 0).unwrap();
        };
        use_next(&mut q);
        assert!(
            !wants_interrupt(&mut q, mem),
            "used index 1 has not passed 1"
        );
        use_next(&mut q);
        assert!(wants_interrupt(&mut q, mem), "used index 2 passed 1");
        use_next(&mut q);
        assert!(!wants_interrupt(&mut q, mem), "not asked for again");
    }
}
