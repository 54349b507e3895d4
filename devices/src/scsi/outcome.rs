//! The result of executing one SCSI command.

use super::sense::{CHECK_CONDITION, GOOD, Sense};

/// Status, autosense and data-in of a completed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// SCSI status byte.
    pub status: u8,
    /// Sense data for CHECK CONDITION.
    pub sense: Option<Sense>,
    /// Small data-in for the initiator (already cut to the allocation
    /// length).
    pub data: Vec<u8>,
    /// Bytes of data-in the command placed straight in the initiator's
    /// buffers (a READ, through [`super::DataBuffers`]); `data` is then
    /// empty.
    pub placed_in: usize,
}

impl Outcome {
    /// GOOD status with `data`.
    pub fn good(data: Vec<u8>) -> Self {
        Outcome {
            status: GOOD,
            sense: None,
            data,
            placed_in: 0,
        }
    }

    /// GOOD status with `len` bytes placed in the initiator's buffers.
    pub fn placed(len: usize) -> Self {
        Outcome {
            placed_in: len,
            ..Outcome::good(Vec::new())
        }
    }

    /// Bytes of data-in in all: held plus placed.
    pub fn data_in_len(&self) -> usize {
        self.data.len() + self.placed_in
    }

    /// CHECK CONDITION with `sense`.
    pub fn check(sense: Sense) -> Self {
        Outcome {
            status: CHECK_CONDITION,
            sense: Some(sense),
            data: Vec::new(),
            placed_in: 0,
        }
    }

    /// Whether the command succeeded.
    pub fn is_good(&self) -> bool {
        self.status == GOOD
    }
}
