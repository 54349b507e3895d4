//! A fake guest for the client tests: the real agent serving a fake root
//! (and a recording fake `System`) on one end of a Unix socket pair per
//! connection, on a std thread.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uvm_api::VsockStream;
use uvm_guest_agent::Agent;
use uvm_guest_agent::client::AgentClient;
use uvm_guest_agent::server::serve;
use uvm_guest_agent::system::fake::FakeSystem;

/// The fake guest and what the tests look at.
pub struct Guest {
    pub root: tempfile::TempDir,
    pub system: Arc<FakeSystem>,
    pub agent: Agent,
    /// Connections opened so far.
    pub connections: Arc<AtomicUsize>,
    /// The agent-side socket of each connection (to break them).
    pub sockets: Arc<Mutex<Vec<UnixStream>>>,
}

fn write(root: &Path, path: &str, text: impl AsRef<[u8]>) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn link(root: &Path, target: &str, path: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// The disks: sdb on virtio-scsi host 0 (PCI 04.0) LUN 1, sda on host 1
/// (PCI 05.0) LUN 3, vda (virtio-blk, read-only), loop0, pmem0.
fn block(r: &Path) {
    for (name, sectors, ro) in [
        ("sda", 6144, "0"),
        ("sdb", 8, "0"),
        ("vda", 8, "1"),
        ("loop0", 0, "0"),
        ("pmem0", 4096, "0"),
    ] {
        write(r, &format!("sys/block/{name}/size"), format!("{sectors}\n"));
        write(r, &format!("sys/block/{name}/ro"), format!("{ro}\n"));
    }
    link(
        r,
        "../../devices/pci0000:00/0000:00:05.0/virtio2/host1/target1:0:0/1:0:0:3",
        "sys/block/sda/device",
    );
    link(
        r,
        "../../devices/pci0000:00/0000:00:04.0/virtio1/host0/target0:0:0/0:0:0:1",
        "sys/block/sdb/device",
    );
    link(
        r,
        "../../devices/pci0000:00/0000:00:06.0/virtio3",
        "sys/block/vda/device",
    );
    for (host, slot) in [(0, "04"), (1, "05")] {
        let dev = format!(
            "devices/pci0000:00/0000:00:{slot}.0/virtio{}/host{host}/scsi_host/host{host}",
            host + 1
        );
        write(r, &format!("sys/{dev}/proc_name"), "virtio_scsi\n");
        link(
            r,
            &format!("../../{dev}"),
            &format!("sys/class/scsi_host/host{host}"),
        );
    }
    write(r, "dev/sda", vec![0u8; 6144 * 512]);
    write(r, "dev/sdb", vec![7u8; 8 * 512]);
}

fn net(r: &Path) {
    for (name, mac, state, carrier, flags) in [
        ("eth0", "52:54:00:12:34:56", "up", Some("1"), "0x1003"),
        ("eth1", "02:00:00:00:00:01", "down", None, "0x1002"),
        ("lo", "00:00:00:00:00:00", "unknown", Some("1"), "0x9"),
    ] {
        write(
            r,
            &format!("sys/class/net/{name}/address"),
            format!("{mac}\n"),
        );
        write(
            r,
            &format!("sys/class/net/{name}/operstate"),
            format!("{state}\n"),
        );
        write(
            r,
            &format!("sys/class/net/{name}/flags"),
            format!("{flags}\n"),
        );
        if let Some(carrier) = carrier {
            write(
                r,
                &format!("sys/class/net/{name}/carrier"),
                format!("{carrier}\n"),
            );
        }
    }
}

/// Shares: vfs1 (not mounted yet; the fake mount does nothing, so its
/// files are laid out at the mount point the client picks) and ro1
/// (already mounted per /proc/mounts, read-only).
fn shares(r: &Path, system: &FakeSystem) {
    write(r, "sys/fs/virtiofs/0/tag", "vfs1\n");
    write(r, "sys/fs/virtiofs/1/tag", "ro1\n");
    write(r, "run/uvm/shares/vfs1/a.txt", "hello");
    write(r, "run/uvm/shares/vfs1/sub/b.bin", [1u8, 2, 3]);
    write(r, "mnt/ro/c.txt", "read only");
    write(
        r,
        "proc/mounts",
        "proc /proc proc rw 0 0\nro1 /mnt/ro virtiofs ro,relatime 0 0\n",
    );
    system.set_read_only(r.join("mnt/ro"));
}

impl Guest {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let system = Arc::new(FakeSystem::default());
        let r = root.path();
        block(r);
        net(r);
        shares(r, &system);
        write(r, "proc/uptime", "12.5 3.0\n");
        let agent = Agent::new(r, system.clone());
        Self {
            root,
            system,
            agent,
            connections: Arc::new(AtomicUsize::new(0)),
            sockets: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A client whose connections each get a fresh agent session.
    pub fn client(&self) -> AgentClient {
        let agent = self.agent.clone();
        let connections = self.connections.clone();
        let sockets = self.sockets.clone();
        AgentClient::new(move || {
            let result = connect(&agent, &connections, &sockets);
            async move { result }
        })
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Breaks every open connection from the agent side.
    pub fn drop_connections(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            socket.shutdown(std::net::Shutdown::Both).unwrap();
        }
    }
}

fn connect(
    agent: &Agent,
    connections: &AtomicUsize,
    sockets: &Mutex<Vec<UnixStream>>,
) -> uvm_api::Result<VsockStream> {
    let (guest, host) = UnixStream::pair().unwrap();
    sockets.lock().unwrap().push(guest.try_clone().unwrap());
    connections.fetch_add(1, Ordering::SeqCst);
    let agent = agent.clone();
    std::thread::spawn(move || {
        let reader = BufReader::new(guest.try_clone().unwrap());
        let _ = serve(&agent, reader, guest);
    });
    Ok(tokio_stream(host))
}

/// Turns the host end of a std socket pair into a client stream.
pub fn tokio_stream(host: UnixStream) -> VsockStream {
    host.set_nonblocking(true).unwrap();
    Box::new(tokio::net::UnixStream::from_std(host).unwrap())
}
