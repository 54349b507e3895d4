//! A guest driver of a built VM's virtio-vsock function, driven through
//! the VM's own port and MMIO buses from the test thread.

use std::sync::Arc;

use uvm_backend_kvm::pci::slots::VSOCK;
use uvm_devices::bus::Bus;
use uvm_devices::virtio::pci_transport::caps;
use uvm_devices::virtio::status;

/// A guest driver of the vsock function: config space through
/// 0xcf8/0xcfc, BAR 0 through MMIO.
pub struct Driver {
    io: Arc<Bus>,
    mmio: Arc<Bus>,
    /// Where BAR 0 is.
    pub bar0: u64,
}

pub fn cam_address(slot: u8, reg: u8) -> [u8; 4] {
    (0x8000_0000u32 | (u32::from(slot) << 11) | u32::from(reg & 0xfc)).to_le_bytes()
}

/// A 32-bit configuration read through port 0xcf8/0xcfc.
pub fn cfg_read32(io: &Bus, slot: u8, reg: u8) -> u32 {
    assert!(io.write(0xcf8, &cam_address(slot, reg)));
    let mut d = [0u8; 4];
    assert!(io.read(0xcfc, &mut d));
    u32::from_le_bytes(d)
}

/// A 16-bit configuration write through port 0xcf8/0xcfc.
pub fn cfg_write16(io: &Bus, slot: u8, reg: u8, v: u16) {
    assert!(io.write(0xcf8, &cam_address(slot, reg)));
    assert!(io.write(0xcfc, &v.to_le_bytes()));
}

impl Driver {
    /// Finds BAR 0 and enables decoding, as `pci_enable_device` does.
    pub fn enable(io: Arc<Bus>, mmio: Arc<Bus>) -> Self {
        let lo = cfg_read32(&io, VSOCK, 0x10);
        let hi = cfg_read32(&io, VSOCK, 0x14);
        let bar0 = (u64::from(hi) << 32) | u64::from(lo & !0xf);
        // Memory decoding + bus mastering.
        cfg_write16(&io, VSOCK, 0x04, 0x6);
        Driver { io, mmio, bar0 }
    }

    pub fn write(&self, off: u64, v: u64, len: usize) {
        assert!(self.mmio.write(self.bar0 + off, &v.to_le_bytes()[..len]));
    }

    pub fn read8(&self, off: u64) -> u8 {
        let mut d = [0u8; 1];
        assert!(self.mmio.read(self.bar0 + off, &mut d));
        d[0]
    }

    pub fn status(&self) -> u8 {
        self.read8(0x14)
    }

    /// Status handshake up to FEATURES_OK with VIRTIO_F_VERSION_1.
    pub fn negotiate(&self) {
        self.write(0x14, u64::from(status::ACKNOWLEDGE | status::DRIVER), 1);
        self.write(0x08, 1, 4); // driver_feature_select = 1
        self.write(0x0c, 1, 4); // VERSION_1 (bit 32)
        self.write(
            0x14,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
            1,
        );
        assert_ne!(self.status() & status::FEATURES_OK, 0);
    }

    pub fn queue(&self, q: u16, desc: u64, avail: u64, used: u64) {
        self.write(0x16, u64::from(q), 2); // queue_select
        self.write(0x18, 16, 2); // queue_size
        self.write(0x20, desc, 8);
        self.write(0x28, avail, 8);
        self.write(0x30, used, 8);
        self.write(0x1c, 1, 2); // queue_enable
    }

    pub fn driver_ok(&self) {
        self.write(
            0x14,
            u64::from(
                status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
            ),
            1,
        );
    }
}

impl Driver {
    /// Notifies queue `q` (a write to its notification slot of BAR 0).
    pub fn notify(&self, q: u16) {
        self.write(
            caps::NOTIFY_OFFSET + u64::from(q) * u64::from(caps::NOTIFY_OFF_MULTIPLIER),
            u64::from(q),
            2,
        );
    }
}
