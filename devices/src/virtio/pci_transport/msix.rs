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

/// Message control: MSI-X enable.
const CONTROL_ENABLE: u16 = 1 << 15;
/// Message control: function mask.
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;

/// The MSI-X enable and function-mask bits of a message control word.
pub fn control_bits(control: u16) -> (bool, bool) {
    (
        control & CONTROL_ENABLE != 0,
        control & CONTROL_FUNCTION_MASK != 0,
    )
}

/// What a snapshot keeps of an MSI-X table: each entry's address, data
/// and vector control, the pending bits, and the message control bits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MsixState {
    /// Per vector: address low, address high, data, vector control.
    pub entries: Vec<[u32; 4]>,
    /// The pending-bit array, 64 vectors per word.
    pub pending: Vec<u64>,
    /// MSI-X enable.
    pub enabled: bool,
    /// Function mask.
    pub function_masked: bool,
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

    /// The table's state, for a snapshot.
    pub fn state(&self) -> MsixState {
        MsixState {
            entries: self
                .entries
                .iter()
                .map(|e| [e.addr_lo, e.addr_hi, e.data, e.ctrl])
                .collect(),
            pending: self.pending.clone(),
            enabled: self.enabled,
            function_masked: self.function_masked,
        }
    }

    /// Puts back a state [`Msix::state`] read from a table of the same
    /// size. Nothing is delivered: a vector pending at save time stays
    /// pending until the guest unmasks it. On an error nothing changes.
    pub fn restore(&mut self, state: &MsixState) -> Result<(), String> {
        let n = self.entries.len();
        if state.entries.len() != n || state.pending.len() != self.pending.len() {
            return Err(format!(
                "{} MSI-X vectors saved, the table has {n}",
                state.entries.len()
            ));
        }
        let beyond = |(word, bits): (usize, &u64)| {
            let valid = n.saturating_sub(64 * word).min(64);
            bits.checked_shr(valid as u32).unwrap_or(0) != 0
        };
        if state.pending.iter().enumerate().any(beyond) {
            return Err("pending bits past the last MSI-X vector".to_owned());
        }
        for (e, [addr_lo, addr_hi, data, ctrl]) in self.entries.iter_mut().zip(&state.entries) {
            *e = Entry {
                addr_lo: *addr_lo,
                addr_hi: *addr_hi,
                data: *data,
                ctrl: ctrl & CTRL_MASKED,
            };
        }
        self.pending.clone_from(&state.pending);
        self.enabled = state.enabled;
        self.function_masked = state.function_masked;
        Ok(())
    }

    /// Whether the guest enabled MSI-X.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Applies the message control word the guest wrote.
    pub fn set_control(&mut self, control: u16) {
        (self.enabled, self.function_masked) = control_bits(control);
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

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u64, u32)>>);

    impl MsiSink for Recorder {
        fn signal(&self, address: u64, data: u32) -> std::io::Result<()> {
            self.0.lock().push((address, data));
            Ok(())
        }
    }

    fn program(msix: &mut Msix, vector: u64, data: u32) {
        msix.table_write(vector * ENTRY_SIZE, &0xfee0_0000u32.to_le_bytes());
        msix.table_write(vector * ENTRY_SIZE + 8, &data.to_le_bytes());
        msix.table_write(vector * ENTRY_SIZE + 12, &0u32.to_le_bytes());
    }

    #[test]
    fn state_carries_the_table_and_a_pending_vector_without_delivering_it() {
        let old = Arc::new(Recorder::default());
        let mut msix = Msix::new(3, old.clone());
        msix.set_control(1 << 15);
        program(&mut msix, 0, 0x41);
        program(&mut msix, 2, 0x43);
        msix.table_write(2 * ENTRY_SIZE + 12, &CTRL_MASKED.to_le_bytes());
        assert!(msix.signal(2));
        assert!(msix.is_pending(2));
        let state = msix.state();

        let new = Arc::new(Recorder::default());
        let mut fresh = Msix::new(3, new.clone());
        fresh.restore(&state).unwrap();
        assert!(new.0.lock().is_empty(), "restore delivers nothing");
        assert!(fresh.is_pending(2));
        assert!(fresh.signal(0));
        assert_eq!(new.0.lock().as_slice(), [(0xfee0_0000, 0x41)]);
        fresh.table_write(2 * ENTRY_SIZE + 12, &0u32.to_le_bytes());
        assert_eq!(
            new.0.lock().as_slice(),
            [(0xfee0_0000, 0x41), (0xfee0_0000, 0x43)],
            "the pending vector goes out when the guest unmasks it"
        );
    }

    #[test]
    fn a_state_of_another_size_or_with_stray_pending_bits_is_refused() {
        let mut msix = Msix::new(3, Arc::new(Recorder::default()));
        let mut four = Msix::new(4, Arc::new(Recorder::default())).state();
        assert!(msix.restore(&four).is_err());
        four.entries.pop();
        four.pending = vec![1 << 3];
        assert!(msix.restore(&four).is_err(), "vector 3 of a table of 3");
        assert_eq!(
            msix.state(),
            Msix::new(3, Arc::new(Recorder::default())).state()
        );
    }
}
