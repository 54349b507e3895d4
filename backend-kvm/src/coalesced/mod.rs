//! Port writes KVM holds instead of exiting to user space, handed to the
//! devices later, in order (`KVM_REGISTER_COALESCED_MMIO` with `pio`,
//! `KVM_CAP_COALESCED_PIO`).
//!
//! An exit to the VMM costs about 47 us in the lab's nested guest. Most
//! exits of a boot are the console: two per byte, a line-status read and
//! the byte's write (see [`uvm_devices::legacy::serial`]). Writes that
//! only latch a value a later read or write acts on can wait:
//!
//! | zone | what the guest writes | held while |
//! |---|---|---|
//! | COM1 `0x3f8`-`0x3ff` | console bytes, interrupt enable, line control | the guest does not wait for the transmitter-empty interrupt ([`TransmitBatching`]) |
//! | PCI `0xcf8` | the configuration address of the next `0xcfc` access | always |
//! | CMOS `0x70` | the register index of the next `0x71` access | always |
//!
//! Order is kept: every vCPU exit first hands over what KVM holds
//! ([`CoalescedWrites::drain`], under one lock that every exit takes, so a
//! write another vCPU made earlier, or one the ticker is handing over, is
//! handled before this exit's access), and a ticker thread
//! hands it over within [`TICK_BUSY`] while the guest writes and
//! [`TICK_IDLE`] when it is quiet, so a write that no exit follows (a
//! guest that turns the transmitter-empty interrupt on and idles) still
//! takes effect. When the ring is full KVM exits for the write as before.
//! Without `KVM_CAP_COALESCED_PIO` nothing is registered and every write
//! exits.

mod ring;
mod ticker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kvm_ioctls::{Cap, IoEventAddress, Kvm, VmFd};
use parking_lot::Mutex;
use uvm_devices::bus::Bus;
use uvm_devices::legacy::serial::TransmitBatching;

use crate::exits::ExitCounters;
use ring::Ring;
pub use ticker::Ticker;

/// How soon a held write takes effect while the guest writes.
pub const TICK_BUSY: Duration = Duration::from_millis(10);
/// How soon a held write takes effect after a quiet second.
pub const TICK_IDLE: Duration = Duration::from_millis(100);

/// A port range KVM may hold writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// The first port.
    pub port: u64,
    /// How many ports.
    pub len: u32,
}

/// COM1's registers.
pub const UART_ZONE: Zone = Zone {
    port: uvm_devices::legacy::serial::COM1_BASE,
    len: uvm_devices::legacy::serial::UART_PORTS as u32,
};
/// The PCI configuration address port (`CONFIG_ADDRESS`).
pub const PCI_ADDRESS_ZONE: Zone = Zone {
    port: 0xcf8,
    len: 4,
};
/// The CMOS index port.
pub const CMOS_INDEX_ZONE: Zone = Zone { port: 0x70, len: 1 };

/// A VM's held writes: the zones KVM holds writes to, the ring it holds
/// them in, and the one consumer lock.
pub struct CoalescedWrites {
    vm: Arc<VmFd>,
    vm_id: String,
    /// Whether KVM can hold port writes at all.
    available: bool,
    /// The ring, once a vCPU exists to map it from.
    ring: OnceLock<Ring>,
    /// The zones asked for, and those registered.
    zones: Mutex<Zones>,
    /// Serializes consumers, so writes are handled in KVM's order.
    consumer: Mutex<()>,
    /// Whether the last drain found anything (the ticker's pace).
    recent: AtomicBool,
}

impl CoalescedWrites {
    /// The held writes of `vm`, with nothing registered yet.
    pub fn new(kvm: &Kvm, vm: Arc<VmFd>, vm_id: &str) -> CoalescedWrites {
        CoalescedWrites {
            available: kvm.check_extension(Cap::CoalescedPio),
            vm,
            vm_id: vm_id.to_owned(),
            ring: OnceLock::new(),
            zones: Mutex::new(Zones::default()),
            consumer: Mutex::new(()),
            recent: AtomicBool::new(false),
        }
    }

    /// Maps the ring from `vcpu_fd` (any vCPU of the VM) and registers the
    /// zones asked for so far. Without the ring no zone is registered: a
    /// mapping failure leaves every write exiting.
    pub fn map_ring(&self, vcpu_fd: std::os::fd::RawFd) {
        if !self.available {
            tracing::info!(vm = %self.vm_id, "KVM cannot hold port writes (no KVM_CAP_COALESCED_PIO): every console byte exits");
            return;
        }
        match Ring::map(vcpu_fd) {
            Ok(ring) => {
                let _ = self.ring.set(ring);
                let mut zones = self.zones.lock();
                for zone in zones.wanted.clone() {
                    self.sync(&mut zones, zone);
                }
            }
            Err(e) => {
                tracing::warn!(vm = %self.vm_id, "mapping the coalesced I/O ring: {e}; every port write exits");
            }
        }
    }

    /// Whether KVM holds writes for this VM (the ring is mapped).
    pub fn active(&self) -> bool {
        self.ring.get().is_some()
    }

    /// Has KVM hold (`on`) or stop holding writes to `zone` (once the ring
    /// is mapped). Idempotent; a refusal is logged and leaves the writes
    /// exiting.
    pub fn set_zone(&self, zone: Zone, on: bool) {
        let mut zones = self.zones.lock();
        zones.wanted.retain(|z| *z != zone);
        if on {
            zones.wanted.push(zone);
        }
        self.sync(&mut zones, zone);
    }

    /// Registers or unregisters `zone` so that KVM does what `zones` wants.
    fn sync(&self, zones: &mut Zones, zone: Zone) {
        if self.ring.get().is_none() {
            return;
        }
        let on = zones.wanted.contains(&zone);
        let registered = &mut zones.registered;
        if registered.contains(&zone) == on {
            return;
        }
        let addr = IoEventAddress::Pio(zone.port);
        let result = if on {
            self.vm.register_coalesced_mmio(addr, zone.len)
        } else {
            self.vm.unregister_coalesced_mmio(addr, zone.len)
        };
        match result {
            Ok(()) if on => registered.push(zone),
            Ok(()) => registered.retain(|z| *z != zone),
            Err(e) => {
                tracing::warn!(vm = %self.vm_id, ?zone, on, "KVM_(UN)REGISTER_COALESCED_MMIO: {e}");
            }
        }
    }

    /// Hands every write KVM holds to `io_bus`, oldest first; returns how
    /// many. Called by every vCPU exit before its own access, by the
    /// ticker, and at the stop. At most one ring's worth per call, so a
    /// guest writing from another vCPU cannot keep the caller here.
    pub fn drain(&self, io_bus: &Bus, counters: &ExitCounters) -> u32 {
        let Some(ring) = self.ring.get() else {
            return 0;
        };
        // The lock is taken even when the ring looks empty: another thread
        // (the ticker, another vCPU) may have taken writes out of it and
        // not handed them over yet, and the caller's own access (a `0xcfc`
        // read after a held `0xcf8` write) must come after them.
        let _consumer = self.consumer.lock();
        if ring.is_empty() {
            return 0;
        }
        let mut handed = 0;
        while handed < ring.capacity() {
            let Some(write) = ring.pop() else {
                break;
            };
            handed += 1;
            if !write.pio {
                // Only port zones are registered.
                uvm_devices::log_limited!(
                    warn,
                    "coalesced MMIO write at {:#x} dropped",
                    write.addr
                );
                continue;
            }
            if !io_bus.write(write.addr, write.bytes()) {
                counters.count(crate::exits::ExitKind::Unhandled);
            }
        }
        counters.count_held_writes(u64::from(handed));
        self.recent.store(true, Ordering::Relaxed);
        handed
    }

    /// Whether KVM holds writes to `zone` now.
    pub fn holds(&self, zone: Zone) -> bool {
        self.zones.lock().registered.contains(&zone)
    }

    /// Whether a drain found writes since the last call (and clears it).
    fn take_recent(&self) -> bool {
        self.recent.swap(false, Ordering::Relaxed)
    }
}

/// The zones asked for and the zones KVM has.
#[derive(Debug, Default)]
struct Zones {
    wanted: Vec<Zone>,
    registered: Vec<Zone>,
}

/// How many times per [`TOGGLE_WINDOW`] the console zone may be
/// registered again; past that it stays unregistered.
pub const TOGGLES_PER_WINDOW: u32 = 16;
/// The window of [`TOGGLES_PER_WINDOW`].
pub const TOGGLE_WINDOW: Duration = Duration::from_secs(1);

/// The console's [`TransmitBatching`]: registers COM1's zone while the
/// guest does not wait for the transmitter-empty interrupt.
///
/// Each registration change is an ioctl that waits for a KVM grace period,
/// and the guest decides when they happen (each `IER.THRI` flip). Linux
/// flips it twice per burst of tty output; a guest that flips it in a loop
/// would keep a vCPU thread in those ioctls. So the zone is registered
/// again at most [`TOGGLES_PER_WINDOW`] times per [`TOGGLE_WINDOW`];
/// past that the console writes simply exit, which is always correct.
pub struct UartBatching {
    writes: Arc<CoalescedWrites>,
    registrations: uvm_devices::ratelimit::LogBudget,
}

impl UartBatching {
    /// The console's batching over `writes`.
    pub fn new(writes: Arc<CoalescedWrites>) -> UartBatching {
        UartBatching {
            writes,
            registrations: uvm_devices::ratelimit::LogBudget::new(
                TOGGLES_PER_WINDOW,
                TOGGLE_WINDOW,
            ),
        }
    }
}

impl TransmitBatching for UartBatching {
    fn set_allowed(&self, allowed: bool) {
        if !allowed {
            self.writes.set_zone(UART_ZONE, false);
        } else if self.registrations.check().is_some() {
            self.writes.set_zone(UART_ZONE, true);
        } else {
            uvm_devices::log_limited!(
                debug,
                vm = %self.writes.vm_id,
                "the guest flips the console's transmit interrupt too often: its bytes exit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held writes of a fresh VM with its ring mapped (and the vCPU the
    /// ring is mapped from); `None`, said as skipped, without /dev/kvm or
    /// `KVM_CAP_COALESCED_PIO`.
    fn writes_on_kvm(name: &str) -> Option<(Arc<CoalescedWrites>, kvm_ioctls::VcpuFd)> {
        let Ok(kvm) = Kvm::new() else {
            eprintln!("SKIPPED: /dev/kvm not available");
            return None;
        };
        let vm = Arc::new(kvm.create_vm().unwrap());
        let vcpu = vm.create_vcpu(0).unwrap();
        let writes = Arc::new(CoalescedWrites::new(&kvm, vm, name));
        writes.map_ring(std::os::fd::AsRawFd::as_raw_fd(&vcpu));
        if !writes.active() {
            eprintln!("SKIPPED: this KVM holds no port writes (no KVM_CAP_COALESCED_PIO)");
            return None;
        }
        Some((writes, vcpu))
    }

    #[test]
    fn a_guest_flipping_the_transmit_interrupt_runs_out_of_registrations() {
        let Some((writes, _vcpu)) = writes_on_kvm("flip") else {
            return;
        };
        let uart = UartBatching::new(writes.clone());
        let mut registered = 0;
        for _ in 0..3 * TOGGLES_PER_WINDOW {
            uart.set_allowed(false);
            assert!(!writes.holds(UART_ZONE), "stopping is always honoured");
            uart.set_allowed(true);
            registered += u32::from(writes.holds(UART_ZONE));
        }
        // A slow machine may cross into the next window once.
        assert!(
            (TOGGLES_PER_WINDOW..=2 * TOGGLES_PER_WINDOW).contains(&registered),
            "{registered} registrations"
        );
        // The other zones are untouched by the console's.
        writes.set_zone(PCI_ADDRESS_ZONE, true);
        writes.set_zone(PCI_ADDRESS_ZONE, true);
        assert!(writes.holds(PCI_ADDRESS_ZONE));
        writes.set_zone(PCI_ADDRESS_ZONE, false);
        assert!(!writes.holds(PCI_ADDRESS_ZONE));
    }

    #[test]
    fn an_exit_waits_for_a_hand_over_in_progress() {
        let Some((writes, _vcpu)) = writes_on_kvm("wait") else {
            return;
        };
        // The ticker has taken writes out of the (now empty) ring and is
        // handing them over: it holds the consumer lock.
        let in_progress = writes.consumer.lock();
        let (done, finished) = std::sync::mpsc::channel();
        let exit = {
            let writes = writes.clone();
            std::thread::spawn(move || {
                let bus = Bus::new();
                writes.drain(&bus, &ExitCounters::default());
                let _ = done.send(());
            })
        };
        assert!(
            finished.recv_timeout(Duration::from_millis(200)).is_err(),
            "the exit went ahead of writes still being handed over"
        );
        drop(in_progress);
        finished
            .recv_timeout(Duration::from_secs(5))
            .expect("the exit goes on once the hand-over is done");
        exit.join().unwrap();
    }

    #[test]
    fn zones_cover_the_latch_ports() {
        assert_eq!((UART_ZONE.port, UART_ZONE.len), (0x3f8, 8));
        assert_eq!((PCI_ADDRESS_ZONE.port, PCI_ADDRESS_ZONE.len), (0xcf8, 4));
        assert_eq!((CMOS_INDEX_ZONE.port, CMOS_INDEX_ZONE.len), (0x70, 1));
    }
}
