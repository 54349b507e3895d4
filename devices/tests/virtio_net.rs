//! virtio-net through the virtio-pci transport with an in-memory backend,
//! the test playing the Linux driver; and the tap set-up when run as root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod virtio_support;

use uvm_devices::virtio::VIRTIO_F_VERSION_1;
use uvm_devices::virtio::net::{
    MemoryBackend, NetBackend, NetDevice, NetHost, RxStatus, Tap, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_STATUS, VNET_HDR_SIZE,
};
use virtio_support::*;
use vm_memory::{Bytes, GuestAddress};

const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];
const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS;

struct Guest {
    m: Machine,
    caps: Caps,
    host: NetHost,
    backend: MemoryBackend,
    rx: GuestQueue,
    tx: GuestQueue,
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl Guest {
    fn new() -> Self {
        let backend = MemoryBackend::new();
        let dev = NetDevice::new(Box::new(backend.clone()), MAC);
        let host = dev.host();
        let m = Machine::new(Box::new(dev));
        let caps = m.probe();
        m.enable_msix(&caps);
        assert!(m.negotiate(&caps, FEATURES));
        let rx = m.setup_queue(&caps, 0, 64, 1);
        let tx = m.setup_queue(&caps, 1, 64, 2);
        m.driver_ok(&caps);
        assert_eq!(m.status(&caps), 0x0f);
        Guest {
            m,
            caps,
            host,
            backend,
            rx,
            tx,
        }
    }

    fn post_rx(&mut self, n: usize, len: u32) {
        let mem = self.m.mem();
        for _ in 0..n {
            let a = self.rx.alloc(len);
            self.rx.add(&mem, &[(a, len, true)]).unwrap();
        }
        self.m.notify(&self.rx);
    }

    fn received(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mem = self.m.mem();
        self.rx
            .take_used(&mem)
            .into_iter()
            .map(|(_, len, bufs)| {
                let mut b = vec![0u8; len as usize];
                mem.read_slice(&mut b, GuestAddress(bufs[0].0)).unwrap();
                let data = b.split_off(VNET_HDR_SIZE);
                (b, data)
            })
            .collect()
    }

    fn send(&mut self, f: &[u8], split: bool) {
        let mem = self.m.mem();
        let h = self.tx.alloc(VNET_HDR_SIZE as u32);
        mem.write_slice(&[0u8; VNET_HDR_SIZE], GuestAddress(h))
            .unwrap();
        let d = self.tx.alloc(f.len() as u32);
        mem.write_slice(f, GuestAddress(d)).unwrap();
        if split {
            self.tx
                .add(
                    &mem,
                    &[(h, VNET_HDR_SIZE as u32, false), (d, f.len() as u32, false)],
                )
                .unwrap();
        } else {
            let a = self.tx.alloc((VNET_HDR_SIZE + f.len()) as u32);
            let mut all = vec![0u8; VNET_HDR_SIZE];
            all.extend_from_slice(f);
            mem.write_slice(&all, GuestAddress(a)).unwrap();
            self.tx.add(&mem, &[(a, all.len() as u32, false)]).unwrap();
        }
        self.m.notify(&self.tx);
    }
}

#[test]
fn config_mac_and_link_status() {
    let g = Guest::new();
    let mac: Vec<u8> = (0..6)
        .map(|i| g.m.read(g.caps.device + i, 1) as u8)
        .collect();
    assert_eq!(mac, MAC);
    assert_eq!(g.m.read(g.caps.device + 6, 2), 1, "link up");
    g.m.write(g.caps.common, 4, 0);
    let lo = g.m.read(g.caps.common + 4, 4);
    assert_eq!(
        lo & (VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS),
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    );
    assert_eq!(lo & 0b111, 0, "no checksum or GSO offloads");
}

#[test]
fn tx_frames_reach_the_backend() {
    let mut g = Guest::new();
    let a = frame(60, 1);
    let b = frame(1514, 2);
    g.send(&a, true);
    g.send(&b, false);
    assert_eq!(g.backend.take_sent(), vec![a, b]);
    let mem = g.m.mem();
    let used = g.tx.take_used(&mem);
    assert_eq!(used.len(), 2);
    assert!(used.iter().all(|u| u.1 == 0));
    assert!(g.m.msi.take().contains(&(MSI_ADDR, 0x22)));
    // A chain shorter than the header is dropped, not sent.
    let h = g.tx.alloc(4);
    g.tx.add(&mem, &[(h, 4, false)]).unwrap();
    g.m.notify(&g.tx);
    assert!(g.backend.take_sent().is_empty());
    assert_eq!(g.tx.take_used(&mem).len(), 1);
}

#[test]
fn rx_frames_reach_the_guest() {
    let mut g = Guest::new();
    // Frames before buffers wait in the backend.
    g.backend.push_to_guest(&frame(100, 3));
    assert_eq!(g.host.process_rx(), RxStatus::NoBuffers);
    g.post_rx(4, 1526);
    let got = g.received();
    assert_eq!(got.len(), 1);
    let (hdr, data) = &got[0];
    assert_eq!(hdr[..10], [0; 10]);
    assert_eq!(&hdr[10..12], &1u16.to_le_bytes(), "num_buffers");
    assert_eq!(data, &frame(100, 3));
    assert!(g.m.msi.take().contains(&(MSI_ADDR, 0x21)));

    // Frames arriving later are pumped by the host handle.
    g.backend.push_to_guest(&frame(1514, 4));
    g.backend.push_to_guest(&frame(9000, 5)); // larger than the buffers: dropped
    g.backend.push_to_guest(&frame(64, 6));
    assert_eq!(g.host.process_rx(), RxStatus::Drained);
    let got: Vec<Vec<u8>> = g.received().into_iter().map(|r| r.1).collect();
    assert_eq!(got, vec![frame(1514, 4), frame(64, 6)]);
    assert_eq!(g.host.process_rx(), RxStatus::Drained);

    g.m.set_status(&g.caps, 0);
    assert_eq!(g.host.process_rx(), RxStatus::Inactive);
}

#[test]
fn tap_setup_in_a_private_network_namespace() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED: needs root and /dev/net/tun");
        return;
    }
    let result = std::thread::spawn(|| {
        // SAFETY: unshare affects only this thread's namespaces; the thread
        // ends with the test, taking the namespace and its tap with it.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let mut tap = Tap::open("uvmt%d").map_err(|e| e.to_string())?;
        assert!(tap.name().starts_with("uvmt"), "{}", tap.name());
        assert!(tap.fd().is_some());
        let mut buf = [0u8; 2048];
        let e = tap.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        assert!(Tap::open("").is_err());
        assert!(Tap::open("a-name-far-too-long").is_err());
        Ok(tap.name().to_string())
    })
    .join()
    .unwrap();
    match result {
        Ok(name) => println!("tap {name} created in a private namespace"),
        Err(e) if e.contains("unshare") => println!("SKIPPED: {e}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_paused_nic_moves_no_frame_until_resume() {
    use uvm_devices::quiesce::Pausable;

    let mut g = Guest::new();
    g.post_rx(4, 1526);
    g.m.function.lock().pause().unwrap();
    // A frame for the guest waits in the backend, and one from the guest
    // waits in its tx ring.
    g.backend.push_to_guest(&frame(100, 7));
    assert_eq!(g.host.process_rx(), RxStatus::Inactive);
    g.send(&frame(60, 8), false);
    assert!(g.received().is_empty(), "rx written while paused");
    assert!(g.backend.take_sent().is_empty(), "tx sent while paused");

    g.m.function.lock().resume().unwrap();
    let got: Vec<Vec<u8>> = g.received().into_iter().map(|r| r.1).collect();
    assert_eq!(got, vec![frame(100, 7)]);
    assert_eq!(g.backend.take_sent(), vec![frame(60, 8)]);
}

#[test]
fn a_restored_nic_goes_on_with_the_guests_rings() {
    let mut g = Guest::new();
    g.send(&frame(60, 1), true);
    g.post_rx(2, 2048);
    g.backend.push_to_guest(&frame(100, 7));
    g.host.process_rx();
    assert_eq!(g.received().len(), 1);
    assert_eq!(g.backend.take_sent().len(), 1);

    let backend = MemoryBackend::new();
    let dev = NetDevice::new(Box::new(backend.clone()), MAC);
    let host = dev.host();
    g.m = restored(&g.m, Box::new(dev));
    g.host = host;
    g.backend = backend;

    // Transmit goes on from the next chain; receive fills the buffer the
    // guest posted before the snapshot (the second of two).
    let sent = frame(1514, 3);
    g.send(&sent, false);
    assert_eq!(g.backend.take_sent(), vec![sent]);
    g.backend.push_to_guest(&frame(200, 9));
    g.host.process_rx();
    let got = g.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, frame(200, 9));
}
