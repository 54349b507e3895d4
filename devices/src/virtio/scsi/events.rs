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

use std::collections::VecDeque;

use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress};

use super::config::{EVENT_SIZE, event, event_lun};
use crate::release::ReleaseSignal;
use crate::virtio::GuestMemory;
use crate::virtio::ProcessError;
use crate::virtio::queue::{add_used, pop_chain};

/// Events kept while the guest posts no buffer; more are dropped and the
/// next delivered event carries EVENTS_MISSED.
pub const MAX_PENDING_EVENTS: usize = 64;

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
            tracing::warn!(lun, reason, "virtio-scsi event dropped: too many pending");
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
                tracing::warn!(room, "virtio-scsi event buffer too small; returned empty");
                add_used(queue, mem, head, 0)?;
                used = true;
                continue;
            }
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
