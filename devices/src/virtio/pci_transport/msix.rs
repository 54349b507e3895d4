//! The MSI-X table and pending-bit array of one function.

use std::sync::Arc;

use crate::interrupt::MsiSink;
use crate::pci::{le_read, le_write};

/// Size of one table entry.
pub const ENTRY_SIZE: u64 = 16;
const CTRL_MASKED: u32 = 1;

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    ctrl: u32,
}

impl Default for Entry {
    fn default() -> Self {
        // Vectors come out of reset masked.
        Entry {
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            ctrl: CTRL_MASKED,
        }
    }
}

/// MSI-X state: table, pending bits, and the enable / function-mask bits of
/// the capability's message control.
pub struct Msix {
    entries: Vec<Entry>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    sink: Arc<dyn MsiSink>,
}

impl Msix {
    /// A table of `vectors` entries delivering through `sink`.
    pub fn new(vectors: u16, sink: Arc<dyn MsiSink>) -> Self {
        let n = usize::from(vectors);
        Msix {
            entries: vec![Entry::default(); n],
            pending: vec![0; n.div_ceil(64)],
            enabled: false,
            function_masked: false,
            sink,
        }
    }

    /// Number of vectors.
    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Whether the guest enabled MSI-X.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Applies the message control word the guest wrote.
    pub fn set_control(&mut self, control: u16) {
        self.enabled = control & (1 << 15) != 0;
        self.function_masked = control & (1 << 14) != 0;
        self.deliver_unmasked();
    }

    fn masked(&self, v: usize) -> bool {
        self.function_masked || self.entries[v].ctrl & CTRL_MASKED != 0
    }

    fn send(&self, v: usize) {
        let e = self.entries[v];
        let addr = (u64::from(e.addr_hi) << 32) | u64::from(e.addr_lo);
        if let Err(err) = self.sink.signal(addr, e.data) {
            crate::log_limited!(error, %err, vector = v, "MSI delivery failed");
        }
    }

    /// Signals `vector`: delivered now, or left pending while masked.
    /// Returns false if the vector does not exist.
    pub fn signal(&mut self, vector: u16) -> bool {
        let v = usize::from(vector);
        if v >= self.entries.len() {
            return false;
        }
        if self.masked(v) {
            self.pending[v / 64] |= 1 << (v % 64);
        } else {
            self.send(v);
        }
        true
    }

    fn deliver_unmasked(&mut self) {
        if !self.enabled {
            return;
        }
        for v in 0..self.entries.len() {
            if self.pending[v / 64] & (1 << (v % 64)) != 0 && !self.masked(v) {
                self.pending[v / 64] &= !(1 << (v % 64));
                self.send(v);
            }
        }
    }

    /// Whether `vector` has a pending bit set.
    pub fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        v < self.entries.len() && self.pending[v / 64] & (1 << (v % 64)) != 0
    }

    /// A guest read of the table at `offset`: dword or qword, aligned.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        let Some(value) = self.table_dword_range(offset, data.len()).map(|(v, f)| {
            let e = &self.entries[v];
            let words = [e.addr_lo, e.addr_hi, e.data, e.ctrl];
            let lo = u64::from(words[f]);
            let hi = words.get(f + 1).map_or(0, |w| u64::from(*w));
            lo | (hi << 32)
        }) else {
            data.fill(0xff);
            return;
        };
        le_write(data, value);
    }

    /// A guest write to the table at `offset`.
    pub fn table_write(&mut self, offset: u64, data: &[u8]) {
        let Some((v, f)) = self.table_dword_range(offset, data.len()) else {
            tracing::debug!(offset, len = data.len(), "ignoring bad MSI-X table write");
            return;
        };
        let value = le_read(data);
        let words = data.len() / 4;
        for i in 0..words {
            let w = (value >> (32 * i)) as u32;
            let e = &mut self.entries[v];
            match f + i {
                0 => e.addr_lo = w,
                1 => e.addr_hi = w,
                2 => e.data = w,
                _ => e.ctrl = w & CTRL_MASKED,
            }
        }
        self.deliver_unmasked();
    }

    /// Entry and dword index of an aligned dword or qword access inside the table.
    fn table_dword_range(&self, offset: u64, len: usize) -> Option<(usize, usize)> {
        if !matches!(len, 4 | 8) || !offset.is_multiple_of(len as u64) {
            return None;
        }
        let v = usize::try_from(offset / ENTRY_SIZE).ok()?;
        (v < self.entries.len()).then_some((v, ((offset % ENTRY_SIZE) / 4) as usize))
    }

    /// A guest read of the pending-bit array (read only).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        if !matches!(data.len(), 4 | 8) || !offset.is_multiple_of(data.len() as u64) {
            data.fill(0xff);
            return;
        }
        let qword = usize::try_from(offset / 8).unwrap_or(usize::MAX);
        let Some(bits) = self.pending.get(qword) else {
            data.fill(0);
            return;
        };
        le_write(data, bits >> (8 * (offset % 8)));
    }
}
