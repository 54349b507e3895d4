//! The result of executing one SCSI command.

use super::sense::{CHECK_CONDITION, GOOD, Sense};

/// Status, autosense and data-in of a completed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// SCSI status byte.
    pub status: u8,
    /// Sense data for CHECK CONDITION.
    pub sense: Option<Sense>,
    /// Data for the initiator (already cut to the allocation length).
    pub data: Vec<u8>,
}

impl Outcome {
    /// GOOD status with `data`.
    pub fn good(data: Vec<u8>) -> Self {
        Outcome {
            status: GOOD,
            sense: None,
            data,
        }
    }

    /// CHECK CONDITION with `sense`.
    pub fn check(sense: Sense) -> Self {
        Outcome {
            status: CHECK_CONDITION,
            sense: Some(sense),
            data: Vec::new(),
        }
    }

    /// Whether the command succeeded.
    pub fn is_good(&self) -> bool {
        self.status == GOOD
    }
}
