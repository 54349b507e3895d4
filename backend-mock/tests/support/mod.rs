//! Helpers shared by the `fake_*` integration tests (included with `#[path]`).
#![cfg(test)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use uvm_api::{
    DiskFormat, Error, MacAddress, Nic, ScsiDisk, ShareKind, SharedFolder, State, StopMode, Uvm,
    UvmConfig, UvmConfigBuilder,
};
use uvm_backend_mock::{FakeBackend, FakeOptions, FakeUvm, Profile};

/// Long enough for anything that should happen; tests fail rather than hang.
pub const LONG: Duration = Duration::from_secs(10);

/// A config builder with 2 vCPUs and 512 MiB.
pub fn config(id: &str) -> UvmConfigBuilder {
    UvmConfig::builder(id).vcpus(2).memory_mib(512)
}

/// A backend with every capability.
pub fn backend() -> FakeBackend {
    FakeBackend::new()
}

/// A backend with `profile`.
pub fn backend_with(profile: Profile) -> FakeBackend {
    FakeBackend::with_profile(profile)
}

/// A backend whose guest takes `eject_delay` to release a removed device.
pub fn backend_with_eject(eject_delay: Duration) -> FakeBackend {
    FakeBackend::with_options(FakeOptions {
        eject_delay,
        ..FakeOptions::default()
    })
}

/// A VM with one SCSI controller, not started.
pub async fn created(id: &str) -> FakeUvm {
    backend()
        .create_fake(config(id).scsi_controllers(1).build().unwrap())
        .await
        .unwrap()
}

/// A running VM with one SCSI controller.
pub async fn running(id: &str) -> FakeUvm {
    let vm = created(id).await;
    vm.start().await.unwrap();
    vm
}

/// A VM of `backend` brought to `state`.
pub async fn in_state_with(backend: &FakeBackend, id: &str, state: State) -> FakeUvm {
    let vm = backend
        .create_fake(config(id).build().unwrap())
        .await
        .unwrap();
    match state {
        State::Created => {}
        State::Running => vm.start().await.unwrap(),
        State::Paused => {
            vm.start().await.unwrap();
            vm.pause().await.unwrap();
        }
        State::Stopped => {
            vm.start().await.unwrap();
            vm.stop(StopMode::Force).await.unwrap();
        }
    }
    assert_eq!(vm.state(), state);
    vm
}

/// A VM of a full backend brought to `state`.
pub async fn in_state(id: &str, state: State) -> FakeUvm {
    in_state_with(&backend(), id, state).await
}

/// Every lifecycle state.
pub const STATES: [State; 4] = [
    State::Created,
    State::Running,
    State::Paused,
    State::Stopped,
];

/// A host file of `len` bytes, byte i = i % 251.
pub fn image(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// A writable raw disk at `controller`:`lun` backed by `path`.
pub fn disk(controller: u8, lun: u8, path: &Path) -> ScsiDisk {
    ScsiDisk {
        controller,
        lun,
        path: path.to_path_buf(),
        format: DiskFormat::Raw,
        read_only: false,
    }
}

/// Parses a MAC address.
pub fn mac(s: &str) -> MacAddress {
    s.parse().unwrap()
}

/// A NIC on tap0.
pub fn nic(id: &str, m: &str) -> Nic {
    Nic {
        id: id.into(),
        endpoint: "tap0".into(),
        mac: mac(m),
    }
}

/// A writable share of `dir`, every file visible.
pub fn share(kind: ShareKind, name: &str, dir: &Path) -> SharedFolder {
    SharedFolder {
        kind,
        name: name.into(),
        host_path: dir.to_path_buf(),
        read_only: false,
        allowed_files: vec![],
    }
}

/// Asserts `result` is `InvalidState` in `want`.
pub fn assert_invalid_state(result: Result<impl std::fmt::Debug, Error>, want: State) {
    match result {
        Err(Error::InvalidState { state, .. }) => assert_eq!(state, want),
        other => panic!("expected InvalidState in {want}, got {other:?}"),
    }
}

/// Asserts `result` is an error of kind `kind` (see `Error::kind`).
pub fn assert_kind(result: Result<impl std::fmt::Debug, Error>, kind: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{e}"),
        Ok(v) => panic!("expected {kind}, got Ok({v:?})"),
    }
}
