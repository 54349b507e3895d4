//! The event queue: hot-add and removal events waiting for guest buffers,
//! the EVENTS_MISSED flag, and the release of removed LUNs.
//!
//! The device takes every buffer the guest posts on the event queue and
//! holds it until it has an event to put in it. The Linux driver handles
//! an event in a work item and re-posts the same buffer when it is done
//! (`virtscsi_handle_event` ends with `virtscsi_kick_event`); for a REMOVED
//! event that is after `scsi_remove_device` returned. So the release of a
//! removed LUN is signalled when the buffer that carried its event comes
//! back on the event queue.
//!
//! # A guest that posts too much
//!
//! The device holds at most one buffer per descriptor head, so never more
//! than the queue size. A driver must not make a buffer available again
//! while the device still owns it (virtio 1.2, 2.7.13 "Supplying Buffers to
//! The Device": a chain on the available ring belongs to the device until
//! it appears on the used ring, and the driver must not alter it before).
//! A head posted while the device holds it is such a violation, and so is
//! anything past the queue size: the device refuses the buffer, does not
//! hold it, and breaks with DEVICE_NEEDS_RESET through the usual error path
//! ([`EventQueueError`] inside [`ProcessError::Buffer`]). A driver reset
//! clears everything held.

use std::collections::VecDeque;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::config::{EVENT_SIZE, event, event_lun};
use crate::release::ReleaseSignal;
use crate::snapshot::StateError;
use crate::virtio::GuestMemory;
use crate::virtio::ProcessError;
use crate::virtio::queue::{add_used, pop_chain};

/// Events kept while the guest posts no buffer; more are dropped and the
/// next delivered event carries EVENTS_MISSED.
pub const MAX_PENDING_EVENTS: usize = 64;

/// Why the event queue refused a guest buffer (the device then breaks).
#[derive(Debug, thiserror::Error)]
pub enum EventQueueError {
    /// The guest made a head available that the device already holds.
    #[error("event buffer head {head} made available twice")]
    DuplicateHead {
        /// The descriptor head posted again.
        head: u16,
    },
    /// The guest posted more buffers than the queue has entries.
    #[error("more event buffers than the queue size {size}")]
    TooManyBuffers {
        /// The queue size.
        size: u16,
    },
}

impl From<EventQueueError> for ProcessError {
    fn from(e: EventQueueError) -> Self {
        ProcessError::Buffer(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

#[derive(Debug)]
struct PendingEvent {
    event: u32,
    lun: u16,
    reason: u32,
    releases: Vec<ReleaseSignal>,
}

#[derive(Debug)]
struct HeldBuffer {
    head: u16,
    segments: Vec<(GuestAddress, usize)>,
}

impl HeldBuffer {
    /// The guest address that identifies the buffer when it is re-posted.
    fn key(&self) -> u64 {
        self.segments.first().map(|s| s.0.0).unwrap_or(u64::MAX)
    }
}

/// What a snapshot keeps of the event queue: the events not yet delivered
/// (event, LUN, reason), the EVENTS_MISSED mark, and the guest buffers the
/// device holds (head and `(address, length)` segments), which the guest
/// will not post again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventsSnapshot {
    /// Undelivered events: event code, LUN, reason.
    pub pending: Vec<(u32, u16, u32)>,
    /// An event was dropped; the next delivered one says so.
    pub missed: bool,
    /// Held guest buffers: head and segments.
    pub held: Vec<(u16, Vec<(u64, usize)>)>,
}

/// Event queue state of one virtio-scsi device.
#[derive(Debug, Default)]
pub struct EventState {
    pending: VecDeque<PendingEvent>,
    missed: bool,
    missed_releases: Vec<ReleaseSignal>,
    held: VecDeque<HeldBuffer>,
    /// Buffers that carried REMOVED events, by guest address, with the
    /// releases that fire when the guest posts them again.
    awaiting: Vec<(u64, Vec<ReleaseSignal>)>,
}

impl EventState {
    /// Queues a transport-reset event about `lun`; `release` fires once the
    /// guest has handled it.
    pub fn push_reset(&mut self, lun: u16, reason: u32, release: Option<ReleaseSignal>) {
        if self.pending.len() >= MAX_PENDING_EVENTS {
            crate::log_limited!(
                warn,
                lun,
                reason,
                "virtio-scsi event dropped: too many pending"
            );
            self.missed = true;
            self.missed_releases.extend(release);
            return;
        }
        self.pending.push_back(PendingEvent {
            event: event::TRANSPORT_RESET,
            lun,
            reason,
            releases: release.into_iter().collect(),
        });
    }

    /// Events not yet delivered (for tests and stats).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Guest event buffers the device holds (for tests and stats).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The state for a snapshot. Refused while a LUN removal waits for the
    /// guest (its release is a host-side waiter a snapshot cannot carry).
    pub fn snapshot(&self) -> Result<EventsSnapshot, StateError> {
        let waiting = self.pending.iter().any(|e| !e.releases.is_empty())
            || !self.missed_releases.is_empty()
            || !self.awaiting.is_empty();
        if waiting {
            return Err(StateError::NotQuiescent(
                "a SCSI LUN removal waits for the guest".into(),
            ));
        }
        Ok(EventsSnapshot {
            pending: self
                .pending
                .iter()
                .map(|e| (e.event, e.lun, e.reason))
                .collect(),
            missed: self.missed,
            held: self
                .held
                .iter()
                .map(|b| (b.head, b.segments.iter().map(|(a, l)| (a.0, *l)).collect()))
                .collect(),
        })
    }

    /// Puts back a snapshot's event state into a device whose event queue
    /// has `queue_size` entries: at most that many held buffers, distinct
    /// heads below it, each long enough for an event, at most
    /// [`MAX_PENDING_EVENTS`] events. On an error nothing changes. (Where
    /// the buffers point is the guest's business: an event written there
    /// goes through guest memory's checked accessors.)
    pub fn restore(&mut self, saved: &EventsSnapshot, queue_size: u16) -> Result<(), StateError> {
        let heads: std::collections::BTreeSet<u16> = saved.held.iter().map(|(h, _)| *h).collect();
        if saved.held.len() > usize::from(queue_size)
            || heads.len() != saved.held.len()
            || heads.iter().any(|h| *h >= queue_size)
        {
            return Err(StateError::Invalid(format!(
                "{} held event buffers that do not fit a queue of {queue_size}",
                saved.held.len()
            )));
        }
        if let Some((head, _)) = saved.held.iter().find(|(_, segments)| {
            segments
                .iter()
                .fold(0usize, |sum, (_, len)| sum.saturating_add(*len))
                < EVENT_SIZE
        }) {
            return Err(StateError::Invalid(format!(
                "held event buffer {head} is shorter than an event"
            )));
        }
        if saved.pending.len() > MAX_PENDING_EVENTS {
            return Err(StateError::Invalid(format!(
                "{} pending events, at most {MAX_PENDING_EVENTS} are kept",
                saved.pending.len()
            )));
        }
        self.reset();
        self.pending = saved
            .pending
            .iter()
            .map(|&(event, lun, reason)| PendingEvent {
                event,
                lun,
                reason,
                releases: Vec::new(),
            })
            .collect();
        self.missed = saved.missed;
        self.held = saved
            .held
            .iter()
            .map(|(head, segments)| HeldBuffer {
                head: *head,
                segments: segments
                    .iter()
                    .map(|&(a, l)| (GuestAddress(a), l))
                    .collect(),
            })
            .collect();
        Ok(())
    }

    /// Forgets everything (device reset or re-activation): the driver
    /// rescans when it comes back, so every removal counts as released.
    pub fn reset(&mut self) {
        let releases = self
            .pending
            .drain(..)
            .flat_map(|e| e.releases)
            .chain(self.missed_releases.drain(..))
            .chain(self.awaiting.drain(..).flat_map(|(_, r)| r));
        for r in releases {
            r.complete();
        }
        self.missed = false;
        self.held.clear();
    }

    /// Takes the guest's new event buffers and fills them with pending
    /// events. Returns whether any buffer was returned to the guest.
    pub fn process(&mut self, queue: &mut Queue, mem: &GuestMemory) -> Result<bool, ProcessError> {
        let mut used = false;
        while let Some(chain) = pop_chain(queue, mem)? {
            let head = chain.head_index();
            // Building a writer checks every buffer lies in guest memory.
            let room = chain
                .clone()
                .writer(mem)
                .map_err(ProcessError::chain)?
                .available_bytes();
            if room < EVENT_SIZE {
                crate::log_limited!(
                    warn,
                    room,
                    "virtio-scsi event buffer too small; returned empty"
                );
                add_used(queue, mem, head, 0)?;
                used = true;
                continue;
            }
            self.check_room_for(head, queue.size())?;
            let segments = chain
                .writable()
                .map(|d| (d.addr(), d.len() as usize))
                .collect();
            let buf = HeldBuffer { head, segments };
            self.repost_seen(buf.key());
            self.held.push_back(buf);
        }
        while !self.held.is_empty() && (!self.pending.is_empty() || self.missed) {
            let Some(buf) = self.held.pop_front() else {
                break;
            };
            let mut ev = self.pending.pop_front().unwrap_or(PendingEvent {
                event: event::NO_EVENT,
                lun: 0,
                reason: 0,
                releases: Vec::new(),
            });
            if self.missed {
                ev.event |= event::EVENTS_MISSED;
                ev.releases.append(&mut self.missed_releases);
                self.missed = false;
            }
            let mut bytes = [0u8; EVENT_SIZE];
            bytes[0..4].copy_from_slice(&ev.event.to_le_bytes());
            if ev.event & !event::EVENTS_MISSED != event::NO_EVENT {
                bytes[4..12].copy_from_slice(&event_lun(ev.lun));
            }
            bytes[12..16].copy_from_slice(&ev.reason.to_le_bytes());
            write_segments(mem, &buf.segments, &bytes)?;
            add_used(queue, mem, buf.head, EVENT_SIZE as u32)?;
            used = true;
            tracing::debug!(
                event = ev.event,
                lun = ev.lun,
                reason = ev.reason,
                "virtio-scsi event delivered"
            );
            if !ev.releases.is_empty() {
                self.awaiting.push((buf.key(), ev.releases));
            }
        }
        Ok(used)
    }

    /// Refuses a head the device holds already, or one past the queue size.
    fn check_room_for(&self, head: u16, size: u16) -> Result<(), EventQueueError> {
        if self.held.iter().any(|b| b.head == head) {
            crate::log_limited!(
                warn,
                head,
                "virtio-scsi event buffer posted twice; device broken"
            );
            return Err(EventQueueError::DuplicateHead { head });
        }
        if self.held.len() >= usize::from(size) {
            tracing::warn!(
                size,
                "virtio-scsi event buffers past the queue size; device broken"
            );
            return Err(EventQueueError::TooManyBuffers { size });
        }
        Ok(())
    }

    fn repost_seen(&mut self, key: u64) {
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting)
            .into_iter()
            .partition(|(k, _)| *k == key);
        self.awaiting = keep;
        for r in done.into_iter().flat_map(|(_, r)| r) {
            tracing::debug!("guest re-posted the event buffer: removed LUN released");
            r.complete();
        }
    }
}

fn write_segments(
    mem: &GuestMemory,
    segments: &[(GuestAddress, usize)],
    mut bytes: &[u8],
) -> Result<(), ProcessError> {
    for &(addr, len) in segments {
        if bytes.is_empty() {
            break;
        }
        let n = len.min(bytes.len());
        mem.write_slice(&bytes[..n], addr)
            .map_err(|e| ProcessError::Buffer(std::io::Error::other(e)))?;
        bytes = &bytes[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::*;

    const SIZE: u16 = 4;
    const WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// Puts descriptor `head` (a 16-byte writable buffer) on the avail ring.
    fn post(mock: &MockSplitQueue<'_, GuestMemory>, head: u16) {
        let desc = SplitDescriptor::new(0x8000 + u64::from(head) * 0x100, 16, WRITE, 0);
        mock.desc_table()
            .store(head, RawDescriptor::from(desc))
            .unwrap();
        let idx = mock.avail().idx().load();
        mock.avail()
            .ring()
            .ref_at(usize::from(idx % SIZE))
            .unwrap()
            .store(head);
        mock.avail().idx().store(idx.wrapping_add(1));
    }

    #[test]
    fn a_head_posted_twice_breaks_the_device_and_is_not_held_twice() {
        let mem = memory();
        let mock = MockSplitQueue::create(&mem, GuestAddress(0), SIZE);
        let mut q: Queue = mock.create_queue().unwrap();
        let mut ev = EventState::default();
        post(&mock, 0);
        assert!(!ev.process(&mut q, &mem).unwrap());
        assert_eq!(ev.held(), 1);
        post(&mock, 0);
        let r = ev.process(&mut q, &mem);
        assert!(r.is_err(), "a duplicate head was accepted: {r:?}");
        assert_eq!(ev.held(), 1, "the duplicate head was held twice");
    }

    #[test]
    fn endless_reposts_never_hold_more_than_the_queue_size() {
        let mem = memory();
        let mock = MockSplitQueue::create(&mem, GuestAddress(0), SIZE);
        let mut q: Queue = mock.create_queue().unwrap();
        let mut ev = EventState::default();
        for i in 0..(SIZE * 50) {
            post(&mock, i % 2);
            let _ = ev.process(&mut q, &mem);
            assert!(ev.held() <= usize::from(SIZE), "held {}", ev.held());
        }
        assert!(ev.held() <= 2);
    }

    #[test]
    fn distinct_heads_up_to_the_queue_size_are_held_and_used() {
        let mem = memory();
        let mock = MockSplitQueue::create(&mem, GuestAddress(0), SIZE);
        let mut q: Queue = mock.create_queue().unwrap();
        let mut ev = EventState::default();
        for h in 0..SIZE {
            post(&mock, h);
        }
        assert!(!ev.process(&mut q, &mem).unwrap());
        assert_eq!(ev.held(), usize::from(SIZE));
        ev.push_reset(1, 0, None);
        assert!(ev.process(&mut q, &mem).unwrap());
        assert_eq!(ev.held(), usize::from(SIZE) - 1);
        // The used buffer may come back.
        post(&mock, 0);
        assert!(!ev.process(&mut q, &mem).unwrap());
        assert_eq!(ev.held(), usize::from(SIZE));
    }

    #[test]
    fn held_buffers_and_pending_events_come_back_and_are_used() {
        let mem = memory();
        let mock = MockSplitQueue::create(&mem, GuestAddress(0), SIZE);
        let mut q: Queue = mock.create_queue().unwrap();
        let mut ev = EventState::default();
        post(&mock, 2);
        assert!(!ev.process(&mut q, &mem).unwrap());
        let saved = ev.snapshot().unwrap();
        assert_eq!(saved.held, vec![(2, vec![(0x8200, 16)])]);

        // A restored device holds the buffer the guest will not post
        // again, and a new event goes into it.
        let mut restored = EventState::default();
        restored.restore(&saved, SIZE).unwrap();
        assert_eq!(restored.held(), 1);
        restored.push_reset(5, 1, None);
        assert!(restored.process(&mut q, &mem).unwrap());
        let mut lun = [0u8; 8];
        mem.read_slice(&mut lun, GuestAddress(0x8200 + 4)).unwrap();
        assert_eq!(lun, event_lun(5), "the event went into the held buffer");
    }

    #[test]
    fn a_pending_removal_refuses_a_snapshot_and_bad_states_are_refused() {
        let mut ev = EventState::default();
        ev.push_reset(3, 2, Some(ReleaseSignal::pending()));
        assert!(matches!(ev.snapshot(), Err(StateError::NotQuiescent(_))));

        let mut target = EventState::default();
        let twice = EventsSnapshot {
            pending: Vec::new(),
            missed: false,
            held: vec![(1, vec![(0x8000, 16)]), (1, vec![(0x9000, 16)])],
        };
        assert!(target.restore(&twice, SIZE).is_err(), "a head held twice");
        let beyond = EventsSnapshot {
            held: vec![(SIZE, vec![(0x8000, 16)])],
            ..twice.clone()
        };
        assert!(
            target.restore(&beyond, SIZE).is_err(),
            "a head past the queue"
        );
        let flood = EventsSnapshot {
            pending: vec![(1, 0, 1); MAX_PENDING_EVENTS + 1],
            missed: false,
            held: Vec::new(),
        };
        assert!(target.restore(&flood, SIZE).is_err());
        assert_eq!((target.held(), target.pending()), (0, 0));
    }
}
