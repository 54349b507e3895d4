//! The transport's side of [`VirtioInterrupt`]: MSI-X vectors, or INTx and
//! the ISR byte when MSI-X is off; plus the DEVICE_NEEDS_RESET flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::msix::{Msix, MsixState};
use crate::interrupt::{IrqLine, MsiSink};
use crate::virtio::VirtioInterrupt;

/// "No vector" in the common configuration's MSI-X vector fields.
pub const NO_VECTOR: u16 = 0xffff;
/// ISR bit: a queue interrupt.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: a configuration change.
pub const ISR_CONFIG: u8 = 2;

/// Interrupt state guarded by one lock.
pub struct InterruptState {
    /// MSI-X table and pending bits.
    pub msix: Msix,
    /// ISR status (read and cleared by the guest).
    pub isr: u8,
    /// Vector of configuration-change interrupts.
    pub config_vector: u16,
    /// Vector of each queue.
    pub queue_vectors: Vec<u16>,
}

/// What a snapshot keeps of the transport's interrupts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterruptsState {
    /// The MSI-X table.
    pub msix: MsixState,
    /// ISR status.
    pub isr: u8,
    /// Vector of configuration-change interrupts.
    pub config_vector: u16,
    /// Vector of each queue.
    pub queue_vectors: Vec<u16>,
    /// Whether the device was marked broken (DEVICE_NEEDS_RESET).
    pub needs_reset: bool,
}

/// Interrupt delivery shared by the transport and the activated device.
pub struct Interrupts {
    state: Mutex<InterruptState>,
    intx: Arc<dyn IrqLine>,
    needs_reset: AtomicBool,
}

impl Interrupts {
    /// Interrupts for `queues` queues with a table of `vectors` MSI-X vectors.
    pub fn new(queues: usize, vectors: u16, msi: Arc<dyn MsiSink>, intx: Arc<dyn IrqLine>) -> Self {
        Interrupts {
            state: Mutex::new(InterruptState {
                msix: Msix::new(vectors, msi),
                isr: 0,
                config_vector: NO_VECTOR,
                queue_vectors: vec![NO_VECTOR; queues],
            }),
            intx,
            needs_reset: AtomicBool::new(false),
        }
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, InterruptState> {
        self.state.lock()
    }

    /// Whether the device was marked broken.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// The interrupt state, for a snapshot.
    pub fn state(&self) -> InterruptsState {
        let st = self.lock();
        InterruptsState {
            msix: st.msix.state(),
            isr: st.isr,
            config_vector: st.config_vector,
            queue_vectors: st.queue_vectors.clone(),
            needs_reset: self.needs_reset(),
        }
    }

    /// Puts back a state [`Interrupts::state`] read from a transport with
    /// as many queues and vectors. Nothing is delivered. On an error
    /// nothing changes.
    pub fn restore(&self, saved: &InterruptsState) -> Result<(), String> {
        let mut st = self.lock();
        if saved.queue_vectors.len() != st.queue_vectors.len() {
            return Err(format!(
                "{} queue vectors saved, the device has {} queues",
                saved.queue_vectors.len(),
                st.queue_vectors.len()
            ));
        }
        let vectors = st.msix.vectors();
        if let Some(v) = std::iter::once(&saved.config_vector)
            .chain(&saved.queue_vectors)
            .find(|v| **v != NO_VECTOR && **v >= vectors)
        {
            return Err(format!("vector {v} outside an MSI-X table of {vectors}"));
        }
        st.msix.restore(&saved.msix)?;
        st.isr = saved.isr;
        st.config_vector = saved.config_vector;
        st.queue_vectors.clone_from(&saved.queue_vectors);
        self.needs_reset.store(saved.needs_reset, Ordering::SeqCst);
        Ok(())
    }

    /// Clears the broken mark (device reset).
    pub fn clear_needs_reset(&self) {
        self.needs_reset.store(false, Ordering::SeqCst);
    }

    fn raise(&self, vector: u16, isr_bit: u8) {
        let mut st = self.lock();
        if st.msix.enabled() {
            if vector != NO_VECTOR && !st.msix.signal(vector) {
                crate::log_limited!(
                    warn,
                    vector,
                    "interrupt on a vector outside the MSI-X table"
                );
            }
            return;
        }
        st.isr |= isr_bit;
        drop(st);
        if let Err(err) = self.intx.trigger() {
            crate::log_limited!(error, %err, "INTx delivery failed");
        }
    }
}

impl VirtioInterrupt for Interrupts {
    fn signal_queue(&self, queue: u16) {
        let vector = {
            let st = self.lock();
            st.queue_vectors
                .get(usize::from(queue))
                .copied()
                .unwrap_or(NO_VECTOR)
        };
        self.raise(vector, ISR_QUEUE);
    }

    fn signal_config(&self) {
        let vector = self.lock().config_vector;
        self.raise(vector, ISR_CONFIG);
    }

    fn set_needs_reset(&self, reason: &str) {
        if !self.needs_reset.swap(true, Ordering::SeqCst) {
            crate::log_limited!(error, reason, "virtio device needs reset");
            self.signal_config();
        }
    }
}
