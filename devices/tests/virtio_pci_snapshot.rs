//! The virtio-pci transport's snapshot state: a function saved while
//! paused comes back in a fresh machine as the guest left it (registers,
//! queue set-up, MSI-X, a running device with its worker and kicks), and a
//! state that cannot be taken is refused without a trace.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use uvm_devices::ioevent::RecordingIoEvents;
use uvm_devices::quiesce::{Pausable, PauseError};
use uvm_devices::snapshot::{DeviceState, Snapshottable, StateError};
use uvm_devices::virtio::{
    ActivateContext, DeviceError, QueueHandler, VIRTIO_F_VERSION_1, VirtioDevice,
};
use virtio_support::*;

/// What the test device records, shared with the test.
#[derive(Default)]
struct Seen {
    served: AtomicUsize,
    activations: AtomicUsize,
    token: Mutex<Option<u32>>,
}

/// A two-queue device whose own state is a token.
struct TokenDevice {
    token: u32,
    seen: Arc<Seen>,
}

struct Handler(Arc<Seen>);

impl QueueHandler for Handler {
    fn handle_queue(&self, _queue: u16) -> Result<(), DeviceError> {
        self.0.served.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl VirtioDevice for TokenDevice {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![16, 16]
    }
    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn ack_features(&mut self, _features: u64) {}
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, _ctx: ActivateContext) -> Result<(), DeviceError> {
        self.seen.activations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn reset(&mut self) {}
    fn queue_handler(&self) -> Arc<dyn QueueHandler> {
        Arc::new(Handler(self.seen.clone()))
    }
}

impl Pausable for TokenDevice {
    fn pause(&mut self) -> Result<(), PauseError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), PauseError> {
        Ok(())
    }
}

impl Snapshottable for TokenDevice {
    fn save_state(&mut self) -> Result<DeviceState, StateError> {
        DeviceState::new("token", 1, &self.token)
    }
    fn restore_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        self.token = state.decode("token", 1)?;
        *self.seen.token.lock() = Some(self.token);
        Ok(())
    }
}

fn machine(token: u32) -> (Machine, Arc<Seen>, Arc<RecordingIoEvents>) {
    let seen = Arc::new(Seen::default());
    let ioevents = Arc::new(RecordingIoEvents::default());
    let device = TokenDevice {
        token,
        seen: seen.clone(),
    };
    let m = Machine::with_worker(Box::new(device), ioevents.clone());
    (m, seen, ioevents)
}

/// A machine whose driver has set up queue 0 (MSI-X vector 1) and started
/// the device.
fn driven(token: u32) -> (Machine, Caps) {
    let (m, _, _) = machine(token);
    let caps = m.probe();
    m.enable_msix(&caps);
    assert!(m.negotiate(&caps, VIRTIO_F_VERSION_1));
    let _q = m.setup_queue(&caps, 0, 16, 1);
    m.driver_ok(&caps);
    (m, caps)
}

/// The registers a driver reads back: common configuration of both queues
/// and the MSI-X table's first three entries.
fn guest_view(m: &Machine, caps: &Caps) -> Vec<u64> {
    let mut view = vec![
        m.read(caps.common + 0x14, 1), // status
        m.read(caps.common + 0x10, 2), // config vector
    ];
    for q in 0..2u64 {
        m.write(caps.common + 0x16, 2, q);
        for (offset, len) in [
            (0x18, 2),
            (0x1a, 2),
            (0x1c, 2),
            (0x20, 8),
            (0x28, 8),
            (0x30, 8),
        ] {
            view.push(m.read(caps.common + offset, len));
        }
    }
    m.write(caps.common + 0x08, 4, 0); // driver feature select 0
    view.push(m.read(caps.common + 0x0c, 4));
    for entry in 0..3u64 {
        for word in 0..4u64 {
            view.push(m.read(caps.msix_table + 16 * entry + 4 * word, 4));
        }
    }
    view.push(m.cfg_read(0x04, 2).into()); // command
    view
}

#[test]
fn a_running_function_comes_back_paused_with_its_worker_and_kicks() {
    let (a, _, a_ioevents) = machine(7);
    let caps = a.probe();
    a.enable_msix(&caps);
    assert!(a.negotiate(&caps, VIRTIO_F_VERSION_1));
    let q0 = a.setup_queue(&caps, 0, 8, 1);
    let _q1 = a.setup_queue(&caps, 1, 16, 2);
    a.driver_ok(&caps);
    let before = guest_view(&a, &caps);
    a.function.lock().pause().unwrap();
    let state = a.function.lock().save_state().unwrap();

    let (b, seen, b_ioevents) = machine(0);
    b.function.lock().pause().unwrap();
    b.function.lock().restore_state(&state).unwrap();
    b.root.lock().refresh_decoding();
    assert_eq!(*seen.token.lock(), Some(7), "the device model's own state");
    assert_eq!(seen.activations.load(Ordering::SeqCst), 1);
    assert!(b.function.lock().has_worker());
    assert_eq!(
        b_ioevents.addresses(),
        a_ioevents.addresses(),
        "kicks tied at the restored notify addresses"
    );
    assert_eq!(
        b_ioevents.addresses(),
        vec![b.bar0 + q0.notify, b.bar0 + q0.notify + 4]
    );
    assert_eq!(guest_view(&b, &caps), before);
    assert_eq!(
        seen.served.load(Ordering::SeqCst),
        0,
        "nothing is served while paused"
    );
    b.function.lock().resume().unwrap();
    wait_until("the held notifications", || {
        seen.served.load(Ordering::SeqCst) >= 2
    });
}

#[test]
fn save_and_restore_are_refused_unless_paused_and_fresh() {
    let (a, _, _) = machine(1);
    let caps = a.probe();
    assert!(a.negotiate(&caps, VIRTIO_F_VERSION_1));
    let _q = a.setup_queue(&caps, 0, 16, 0xffff);
    a.driver_ok(&caps);
    assert!(matches!(
        a.function.lock().save_state(),
        Err(StateError::NotQuiescent(_))
    ));
    a.function.lock().pause().unwrap();
    let state = a.function.lock().save_state().unwrap();

    let (running, seen, _) = machine(0);
    assert!(matches!(
        running.function.lock().restore_state(&state),
        Err(StateError::NotQuiescent(_))
    ));
    // A function the driver already set up is not a restore target.
    let (set_up, _, _) = machine(0);
    let set_up_caps = set_up.probe();
    assert!(set_up.negotiate(&set_up_caps, VIRTIO_F_VERSION_1));
    set_up.function.lock().pause().unwrap();
    assert!(matches!(
        set_up.function.lock().restore_state(&state),
        Err(StateError::NotQuiescent(_))
    ));
    assert!(seen.token.lock().is_none());
}

#[test]
fn a_bad_state_leaves_the_function_fresh() {
    let (a, caps) = driven(3);
    a.function.lock().pause().unwrap();
    let good = a.function.lock().save_state().unwrap();

    let (b, seen, ioevents) = machine(0);
    b.probe();
    let fresh_view = guest_view(&b, &caps);
    b.function.lock().pause().unwrap();
    // The device model refuses its part (another kind of state): the
    // transport has been activated by then and must undo it.
    let mut wrong_device = good.clone();
    wrong_device.data["device"]["kind"] = "other".into();
    assert!(matches!(
        b.function.lock().restore_state(&wrong_device),
        Err(StateError::Mismatch { .. })
    ));
    // A queue size the device does not offer.
    let mut too_big = good.clone();
    too_big.data["common"]["queues"][0]["size"] = 64.into();
    assert!(matches!(
        b.function.lock().restore_state(&too_big),
        Err(StateError::Invalid(_))
    ));
    // Rings outside guest memory: the re-activation fails, quietly.
    let mut off_memory = good.clone();
    off_memory.data["common"]["queues"][0]["desc"] = (1u64 << 40).into();
    assert!(matches!(
        b.function.lock().restore_state(&off_memory),
        Err(StateError::Invalid(_))
    ));
    // A running device whose status says it never got DRIVER_OK.
    let mut not_running = good.clone();
    not_running.data["common"]["status"] = 0x0b.into();
    assert!(matches!(
        b.function.lock().restore_state(&not_running),
        Err(StateError::Invalid(_))
    ));
    // Another function's identity in configuration space.
    let mut foreign = good.clone();
    foreign.data["config"][2] = 0x99.into();
    assert!(matches!(
        b.function.lock().restore_state(&foreign),
        Err(StateError::Invalid(_))
    ));
    assert!(!b.function.lock().has_worker());
    assert!(ioevents.addresses().is_empty());
    assert!(
        b.msi.take().is_empty(),
        "a refused restore sent an interrupt"
    );
    assert!(seen.token.lock().is_none());
    assert_eq!(guest_view(&b, &caps), fresh_view);
    // And the good state still goes in afterwards.
    b.function.lock().restore_state(&good).unwrap();
    assert_eq!(*seen.token.lock(), Some(3));
}

#[test]
fn the_bus_saves_and_restores_every_function_by_slot() {
    let (a, caps) = driven(11);
    let before = guest_view(&a, &caps);
    a.root.lock().pause().unwrap();
    let state = a.root.lock().save_state().unwrap();

    let (b, seen, _) = machine(0);
    b.root.lock().pause().unwrap();
    b.root.lock().restore_state(&state).unwrap();
    assert_eq!(*seen.token.lock(), Some(11));
    assert_eq!(
        guest_view(&b, &caps),
        before,
        "decoding refreshed by the bus"
    );

    // A bus with another function in another slot is not this state's.
    let (c, seen, _) = machine(0);
    let extra = uvm_devices::virtio::pci_transport::VirtioPciDevice::new(
        Box::new(TokenDevice {
            token: 0,
            seen: Arc::new(Seen::default()),
        }),
        c.mem.clone(),
        c.msi.clone(),
        c.intx.clone(),
    )
    .unwrap();
    let extra: uvm_devices::pci::SharedFunction = Arc::new(Mutex::new(extra));
    c.root.lock().add_function(Some(SLOT + 1), extra).unwrap();
    c.root.lock().pause().unwrap();
    assert!(matches!(
        c.root.lock().restore_state(&state),
        Err(StateError::Invalid(_))
    ));
    assert!(seen.token.lock().is_none(), "no function restored");
}

#[test]
fn a_guest_that_never_finished_negotiating_can_still_be_restored() {
    let (a, _, _) = machine(5);
    let caps = a.probe();
    // ACKNOWLEDGE | DRIVER, then features the device does not offer, and
    // no FEATURES_OK: the live device keeps them until the driver goes on.
    a.set_status(&caps, 1);
    a.set_status(&caps, 3);
    a.write(caps.common + 0x08, 4, 1);
    a.write(caps.common + 0x0c, 4, 0x8000_0000);
    a.function.lock().pause().unwrap();
    let state = a.function.lock().save_state().unwrap();
    let (b, seen, _) = machine(0);
    b.function.lock().pause().unwrap();
    b.function.lock().restore_state(&state).unwrap();
    assert_eq!(*seen.token.lock(), Some(5));
    assert_eq!(b.function.lock().status(), 3);
}
