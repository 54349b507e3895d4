//! Every `GuestProbe` method of the agent client, end to end against the
//! real agent serving a fake guest root.

#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::time::Duration;

use common::Guest;
use uvm_api::{
    Error, GuestAction, GuestBlockDevice, GuestNic, GuestPmem, GuestProbe, GuestShare, Resource,
};
use uvm_guest_agent::system::PowerAction;
use uvm_guest_agent::system::fake::MountCall;

fn io_kind(error: &Error) -> Option<io::ErrorKind> {
    match error {
        Error::Io { source, .. } => Some(source.kind()),
        _ => None,
    }
}

#[tokio::test]
async fn block_devices_map_scsi_hosts_to_controllers() {
    let guest = Guest::new();
    let client = guest.client();
    let devices = client.block_devices().await.unwrap();
    assert_eq!(
        devices,
        vec![
            GuestBlockDevice {
                name: "sda".into(),
                size_bytes: 6144 * 512,
                scsi_address: Some((1, 3)),
                read_only: false
            },
            GuestBlockDevice {
                name: "sdb".into(),
                size_bytes: 8 * 512,
                scsi_address: Some((0, 1)),
                read_only: false
            },
            GuestBlockDevice {
                name: "vda".into(),
                size_bytes: 8 * 512,
                scsi_address: None,
                read_only: true
            },
        ]
    );
    assert_eq!(
        client.pmem_devices().await.unwrap(),
        vec![GuestPmem {
            name: "pmem0".into(),
            size_bytes: 4096 * 512
        }]
    );
    // One connection served everything.
    assert_eq!(guest.connections(), 1);
}

#[tokio::test]
async fn block_reads_and_writes_round_trip_in_chunks() {
    let guest = Guest::new();
    let client = guest.client();
    // Over 1 MiB: split into several agent requests.
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    client.write_block("sda", 4096, &data).await.unwrap();
    let on_disk = std::fs::read(guest.root.path().join("dev/sda")).unwrap();
    assert_eq!(&on_disk[4096..4096 + data.len()], &data[..]);
    assert_eq!(
        client
            .read_block("sda", 4096, data.len() as u64)
            .await
            .unwrap(),
        data
    );
    assert_eq!(client.read_block("sdb", 0, 3).await.unwrap(), vec![7, 7, 7]);
    assert_eq!(
        client.read_block("sdb", 0, 0).await.unwrap(),
        Vec::<u8>::new()
    );

    let past_end = client.read_block("sdb", 4094, 4).await.unwrap_err();
    assert!(
        matches!(&past_end, Error::InvalidArgument { argument, .. } if argument == "offset"),
        "{past_end:?}"
    );
    let missing = client.read_block("sdz", 0, 1).await.unwrap_err();
    assert!(
        matches!(&missing, Error::InvalidArgument { argument, .. } if argument == "name"),
        "{missing:?}"
    );
    let bad_name = client.write_block("../etc", 0, b"x").await.unwrap_err();
    assert!(
        matches!(bad_name, Error::InvalidArgument { .. }),
        "{bad_name:?}"
    );
}

#[tokio::test]
async fn network_interfaces_skip_lo_and_bring_nics_up() {
    let guest = Guest::new();
    let client = guest.client();
    let nics = client.network_interfaces().await.unwrap();
    assert_eq!(
        nics,
        vec![
            GuestNic {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".parse().unwrap(),
                link_up: true
            },
            // The fake `ip` changes nothing in sysfs, so eth1 stays down.
            GuestNic {
                name: "eth1".into(),
                mac: "02:00:00:00:00:01".parse().unwrap(),
                link_up: false
            },
        ]
    );
    assert_eq!(
        guest.system.commands(),
        vec!["ip link set eth1 up".to_owned()]
    );
}

#[tokio::test]
async fn shares_are_mounted_on_demand_and_report_read_only() {
    let guest = Guest::new();
    let client = guest.client();
    assert_eq!(
        client.shares().await.unwrap(),
        vec![
            GuestShare {
                tag: "ro1".into(),
                read_only: true
            },
            GuestShare {
                tag: "vfs1".into(),
                read_only: false
            },
        ]
    );
    // ro1 was mounted already; vfs1 was mounted read-write where the client mounts shares.
    let mount = MountCall {
        source: "vfs1".into(),
        target: guest.root.path().join("run/uvm/shares/vfs1"),
        fstype: "virtiofs".into(),
        read_only: false,
    };
    assert_eq!(guest.system.mounts(), vec![mount]);

    assert_eq!(
        client.list_share("vfs1").await.unwrap(),
        vec!["a.txt".to_owned(), "sub/b.bin".to_owned()]
    );
    assert_eq!(
        client.list_share("ro1").await.unwrap(),
        vec!["c.txt".to_owned()]
    );
    assert_eq!(
        client.read_share_file("vfs1", "a.txt").await.unwrap(),
        b"hello"
    );
    assert_eq!(
        client.read_share_file("vfs1", "sub/b.bin").await.unwrap(),
        [1, 2, 3]
    );
    assert_eq!(
        client.read_share_file("ro1", "c.txt").await.unwrap(),
        b"read only"
    );

    client
        .write_share_file("vfs1", "new.txt", b"from the guest")
        .await
        .unwrap();
    let host = guest.root.path().join("run/uvm/shares/vfs1/new.txt");
    assert_eq!(std::fs::read(host).unwrap(), b"from the guest");
    assert!(
        client
            .list_share("vfs1")
            .await
            .unwrap()
            .contains(&"new.txt".to_owned())
    );

    let refused = client
        .write_share_file("ro1", "c.txt", b"x")
        .await
        .unwrap_err();
    assert_eq!(
        io_kind(&refused),
        Some(io::ErrorKind::PermissionDenied),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read(guest.root.path().join("mnt/ro/c.txt")).unwrap(),
        b"read only"
    );
}

#[tokio::test]
async fn share_errors_are_typed() {
    let guest = Guest::new();
    let client = guest.client();
    let unknown = client.list_share("nope").await.unwrap_err();
    assert!(
        matches!(&unknown, Error::NotFound { resource: Resource::VirtioFs, id } if id == "nope"),
        "{unknown:?}"
    );
    let missing = client
        .read_share_file("vfs1", "missing.txt")
        .await
        .unwrap_err();
    assert_eq!(
        io_kind(&missing),
        Some(io::ErrorKind::NotFound),
        "{missing:?}"
    );
    for path in ["/etc/passwd", "../x", ""] {
        let bad = client.read_share_file("vfs1", path).await.unwrap_err();
        assert!(
            matches!(bad, Error::InvalidArgument { .. }),
            "{path:?}: {bad:?}"
        );
    }
    let no_dir = client
        .write_share_file("vfs1", "no/such/dir.txt", b"x")
        .await
        .unwrap_err();
    assert_eq!(
        io_kind(&no_dir),
        Some(io::ErrorKind::NotFound),
        "{no_dir:?}"
    );
}

#[tokio::test]
async fn uptime_and_vsock() {
    let guest = Guest::new();
    let client = guest.client();
    assert_eq!(
        client.uptime().await.unwrap(),
        Duration::from_millis(12_500)
    );

    guest.system.set_host_reply(5000, b"re: ");
    assert_eq!(client.dial_host(5000, b"hi").await.unwrap(), b"re: hi");
    assert_eq!(guest.system.dials(), vec![(5000, b"hi".to_vec())]);
    let refused = client.dial_host(5001, b"hi").await.unwrap_err();
    assert_eq!(
        io_kind(&refused),
        Some(io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    let any = client.dial_host(u32::MAX, b"").await.unwrap_err();
    assert!(matches!(any, Error::InvalidArgument { .. }), "{any:?}");

    client.serve_echo(6000).await.unwrap();
    let again = client.serve_echo(6000).await.unwrap_err();
    assert!(
        matches!(&again, Error::AlreadyExists { resource: Resource::VmSocket, id } if id == "6000"),
        "{again:?}"
    );
    assert_eq!(guest.system.echo_ports(), vec![6000]);
}

#[tokio::test]
async fn concurrent_dials_use_their_own_connections() {
    let guest = Guest::new();
    let client = guest.client();
    guest.system.set_host_reply(5000, b"ok ");
    client.uptime().await.unwrap();
    let (a, b, c) = tokio::join!(
        client.dial_host(5000, b"a"),
        client.dial_host(5000, b"b"),
        client.dial_host(5000, b"c"),
    );
    assert_eq!(a.unwrap(), b"ok a");
    assert_eq!(b.unwrap(), b"ok b");
    assert_eq!(c.unwrap(), b"ok c");
    // The shared connection plus one per dial.
    assert_eq!(guest.connections(), 4);
}

#[tokio::test]
async fn trigger_asks_the_agent_and_refuses_crash() {
    let guest = Guest::new();
    let client = guest.client();
    let crash = client.trigger(GuestAction::Crash).await.unwrap_err();
    assert!(
        matches!(&crash, Error::InvalidArgument { argument, .. } if argument == "action"),
        "{crash:?}"
    );
    for (action, expected) in [
        (GuestAction::PowerOff, PowerAction::PowerOff),
        (GuestAction::Reboot, PowerAction::Reboot),
        (GuestAction::Panic, PowerAction::Panic),
    ] {
        client.trigger(action).await.unwrap();
        // The agent acts once its answer is out: wait for it.
        for _ in 0..200 {
            if guest.system.power_actions().last() == Some(&expected) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(guest.system.power_actions().last(), Some(&expected));
    }
    // Each power action ended its session; the next request reconnects.
    client.uptime().await.unwrap();
    assert_eq!(guest.connections(), 4);
}
