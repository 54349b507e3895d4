//! The shim functions, tested against mockall mocks: no backend involved.

// Integration tests are only built for tests: this lets clippy treat the
// helper functions as test code.
#![cfg(test)]

use std::path::Path;
use std::time::Duration;

use mockall::predicate::eq;
use uvm_api::{
    Error, ExitStatus, Operation, Removal, Resource, ScsiManager, StopMode, StopReason,
    VpmemManager,
};
use uvm_backend_mock::mocks::{MockScsiManager, MockUvm, MockVpmemManager};
use uvm_examples::{LayerAttachment, attach_layer, detach_layer, shutdown};

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn vm_supporting(pairs: &'static [(Resource, Operation)]) -> MockUvm {
    let mut vm = MockUvm::new();
    vm.expect_id().return_const("vm-under-test".to_owned());
    vm.expect_supported()
        .returning(move |r, op| pairs.contains(&(r, op)));
    vm
}

#[tokio::test]
async fn attach_prefers_scsi_when_supported() {
    let mut scsi = MockScsiManager::new();
    scsi.expect_add_disk()
        .withf(|d| d.controller == 0 && d.lun == 3 && d.read_only && d.path == Path::new("/l.img"))
        .times(1)
        .returning(|_| Ok(()));
    let scsi: &'static dyn ScsiManager = leak(scsi);
    let mut vm = vm_supporting(&[
        (Resource::Scsi, Operation::Add),
        (Resource::VPMem, Operation::Add),
    ]);
    vm.expect_scsi().return_const(Some(scsi));
    vm.expect_vpmem().never();

    let got = attach_layer(&vm, 0, 3, Path::new("/l.img")).await.unwrap();
    assert_eq!(
        got,
        LayerAttachment::Scsi {
            controller: 0,
            lun: 3
        }
    );
}

#[tokio::test]
async fn attach_falls_back_to_vpmem() {
    let mut vpmem = MockVpmemManager::new();
    vpmem
        .expect_add_device()
        .withf(|d| d.id == 2 && d.read_only)
        .times(1)
        .returning(|_| Ok(()));
    let vpmem: &'static dyn VpmemManager = leak(vpmem);
    let mut vm = vm_supporting(&[(Resource::VPMem, Operation::Add)]);
    vm.expect_vpmem().return_const(Some(vpmem));
    vm.expect_scsi().never();

    let got = attach_layer(&vm, 0, 2, Path::new("/l.img")).await.unwrap();
    assert_eq!(got, LayerAttachment::Vpmem { slot: 2 });
}

#[tokio::test]
async fn attach_without_any_capability_is_not_supported() {
    let mut vm = vm_supporting(&[]);
    vm.expect_scsi().never();
    vm.expect_vpmem().never();
    let err = attach_layer(&vm, 0, 0, Path::new("/l.img"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotSupported {
                resource: Resource::Scsi,
                operation: Operation::Add
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn attach_passes_the_backend_error_through() {
    let mut scsi = MockScsiManager::new();
    scsi.expect_add_disk()
        .returning(|d| Err(Error::already_exists(Resource::Scsi, d.address())));
    let scsi: &'static dyn ScsiManager = leak(scsi);
    let mut vm = vm_supporting(&[(Resource::Scsi, Operation::Add)]);
    vm.expect_scsi().return_const(Some(scsi));
    let err = attach_layer(&vm, 1, 4, Path::new("/l.img"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists { ref id, .. } if id == "1:4"),
        "{err:?}"
    );
}

#[tokio::test]
async fn detach_waits_for_the_guest_and_times_out_if_it_never_releases() {
    let mut scsi = MockScsiManager::new();
    scsi.expect_remove_disk()
        .with(eq(0), eq(1))
        .times(1)
        .returning(|c, l| Ok(Removal::completed(Resource::Scsi, format!("{c}:{l}"))));
    scsi.expect_remove_disk()
        .with(eq(0), eq(2))
        .times(1)
        .returning(|c, l| {
            let (removal, completer) = Removal::pending(Resource::Scsi, format!("{c}:{l}"));
            Box::leak(Box::new(completer)); // the guest never releases it
            Ok(removal)
        });
    let scsi: &'static dyn ScsiManager = leak(scsi);
    let mut vm = vm_supporting(&[]);
    vm.expect_scsi().return_const(Some(scsi));

    let attached = LayerAttachment::Scsi {
        controller: 0,
        lun: 1,
    };
    detach_layer(&vm, attached, Duration::from_secs(1))
        .await
        .unwrap();
    let stuck = LayerAttachment::Scsi {
        controller: 0,
        lun: 2,
    };
    let err = detach_layer(&vm, stuck, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn shutdown_stops_gracefully_and_reports_the_reason() {
    let mut vm = vm_supporting(&[]);
    vm.expect_stop()
        .with(eq(StopMode::Graceful {
            timeout: Duration::from_secs(3),
        }))
        .times(1)
        .returning(|_| Ok(()));
    vm.expect_wait()
        .return_const(ExitStatus::new(StopReason::Shutdown));
    vm.expect_exit_error().return_const(None);
    let status = shutdown(&vm, Duration::from_secs(3)).await.unwrap();
    assert_eq!(status.reason, StopReason::Shutdown);
}

mod choosing_a_backend {
    use std::sync::Arc;

    use uvm_api::{Error, Registry};
    use uvm_backend_mock::FakeBackend;
    use uvm_backend_mock::mocks::MockBackend;
    use uvm_examples::{choose_backend, default_registry};

    /// The fake plus the given hypervisor stand-ins (not the host's real
    /// backends, whose availability depends on the machine).
    fn registry_with(hypervisors: Vec<Arc<MockBackend>>) -> Registry {
        let mut registry = Registry::new();
        registry.register(Arc::new(FakeBackend::new())).unwrap();
        for backend in hypervisors {
            registry.register(backend).unwrap();
        }
        registry
    }

    fn fake_hypervisor(name: &'static str, available: bool) -> Arc<MockBackend> {
        let mut backend = MockBackend::new();
        backend.expect_name().return_const(name.to_owned());
        backend.expect_check_available().returning(move || {
            if available {
                Ok(())
            } else {
                Err(Error::invalid_argument("host", "no /dev/kvm"))
            }
        });
        Arc::new(backend)
    }

    #[test]
    fn falls_back_to_the_mock_with_a_note() {
        let registry = registry_with(vec![fake_hypervisor("kvm", false)]);
        let choice = choose_backend(&registry, None).unwrap();
        assert_eq!(choice.name, "mock");
        let note = choice.note.unwrap();
        assert!(
            note.contains("using the mock backend") && note.contains("kvm, mock"),
            "{note}"
        );
    }

    #[test]
    fn prefers_an_available_hypervisor_and_skips_an_unavailable_one() {
        let registry = registry_with(vec![
            fake_hypervisor("aaa-down", false),
            fake_hypervisor("kvm", true),
        ]);
        let choice = choose_backend(&registry, None).unwrap();
        assert_eq!((choice.name.as_str(), choice.note), ("kvm", None));
    }

    #[test]
    fn the_default_registry_has_kvm_and_mock() {
        let registry = default_registry().unwrap();
        assert_eq!(registry.names(), ["kvm", "mock"]);
        assert!(registry.available().contains(&"mock".to_owned()));
    }

    #[test]
    fn a_requested_backend_must_exist_and_be_available() {
        let mut registry = Registry::new();
        registry.register(fake_hypervisor("kvm", false)).unwrap();
        let err = choose_backend(&registry, Some("nope")).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownBackend { available, .. } if available == &["kvm"]),
            "{err:?}"
        );
        let err = choose_backend(&registry, Some("kvm")).unwrap_err();
        assert!(err.to_string().contains("no /dev/kvm"), "{err}");
        let err = registry.register(fake_hypervisor("kvm", true)).unwrap_err();
        assert!(matches!(err, Error::AlreadySet { .. }), "{err:?}");
    }
}
