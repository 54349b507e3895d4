//! The state hook: how the VMM will capture a device's state into a
//! snapshot and put it back at restore.
//!
//! A device's state leaves it as a [`DeviceState`]: a kind, a version and a
//! serde-described value, so that the snapshot format is documented by the
//! types and a newer VMM can refuse (or convert) an older version with a
//! typed error instead of misreading it. The references are Cloud
//! Hypervisor's `vm-migration::Snapshottable` and Firecracker's per-device
//! `persist.rs`.
//!
//! State capture itself comes with snapshot support: until a device
//! implements it, both calls answer [`StateError::NotSupported`], so a save
//! of a VM holding that device is refused, never silently incomplete.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One device's state, as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceState {
    /// What kind of device wrote it (for example `"virtio-scsi"`).
    pub kind: String,
    /// The version of that kind's state layout.
    pub version: u32,
    /// The state itself.
    pub data: serde_json::Value,
}

impl DeviceState {
    /// Describes `data` as version `version` of `kind`'s state.
    pub fn new(kind: &str, version: u32, data: &impl Serialize) -> Result<Self, StateError> {
        Ok(DeviceState {
            kind: kind.to_owned(),
            version,
            data: serde_json::to_value(data).map_err(|e| StateError::Encoding(e.to_string()))?,
        })
    }

    /// The state as `T`, if it is version `version` of `kind`'s state.
    pub fn decode<T: DeserializeOwned>(&self, kind: &str, version: u32) -> Result<T, StateError> {
        if self.kind != kind || self.version != version {
            return Err(StateError::Mismatch {
                expected: format!("{kind} v{version}"),
                found: format!("{} v{}", self.kind, self.version),
            });
        }
        serde_json::from_value(self.data.clone()).map_err(|e| StateError::Encoding(e.to_string()))
    }
}

/// A device whose state can be saved and restored.
pub trait Snapshottable {
    /// The device's state; called only while it is paused.
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        Err(StateError::NotSupported)
    }

    /// Puts back a state [`Snapshottable::save_state`] produced.
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let _ = state;
        Err(StateError::NotSupported)
    }
}

/// Why a state could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// This device does not capture its state (yet).
    #[error("the device cannot save or restore its state")]
    NotSupported,
    /// The state belongs to another kind of device or another version.
    #[error("state of {found} where {expected} was expected")]
    Mismatch {
        /// The kind and version the device reads.
        expected: String,
        /// The kind and version found.
        found: String,
    },
    /// The state could not be encoded or decoded.
    #[error("state encoding: {0}")]
    Encoding(String),
    /// The state decodes but holds a value the device cannot take (a
    /// register block of the wrong size, an index out of range).
    #[error("invalid state: {0}")]
    Invalid(String),
    /// The device is not in a state to be saved or restored now: it runs,
    /// a reset is completing, or the driver has already set it up.
    #[error("device not quiescent: {0}")]
    NotQuiescent(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_decodes_only_as_its_own_kind_and_version() {
        let state = DeviceState::new("test", 2, &vec![1u8, 2]).unwrap();
        assert_eq!(state.decode::<Vec<u8>>("test", 2).unwrap(), vec![1, 2]);
        assert!(matches!(
            state.decode::<Vec<u8>>("test", 1),
            Err(StateError::Mismatch { .. })
        ));
        assert!(matches!(
            state.decode::<Vec<u8>>("other", 2),
            Err(StateError::Mismatch { .. })
        ));
        assert!(matches!(
            state.decode::<String>("test", 2),
            Err(StateError::Encoding(_))
        ));
    }

    #[test]
    fn devices_without_state_capture_say_so() {
        struct Plain;
        impl Snapshottable for Plain {}
        let state = DeviceState::new("test", 1, &()).unwrap();
        assert!(matches!(Plain.save_state(), Err(StateError::NotSupported)));
        assert!(matches!(
            Plain.restore_state(&state),
            Err(StateError::NotSupported)
        ));
    }
}
