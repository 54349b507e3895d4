//! Network interfaces: `/sys/class/net` listings, and busybox `ip` / `ping`
//! (run through [`System::run`]) to set an address and reach the host.

use std::path::Path;

use super::{HandlerError, HandlerResult, check_name, read_trimmed};
use crate::protocol::{Empty, Interface, InterfacesReply, PingHostReply};
use crate::system::System;

fn describe(dir: &Path, name: &str) -> Interface {
    let read = |file: &str| read_trimmed(&dir.join(file)).ok();
    Interface {
        name: name.to_owned(),
        mac: read("address").unwrap_or_default(),
        operstate: read("operstate").unwrap_or_else(|| "unknown".to_owned()),
        // Reading `carrier` fails (EINVAL) while the interface is down.
        carrier: read("carrier").and_then(|c| match c.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        }),
        mtu: read("mtu").and_then(|m| m.parse().ok()),
        admin_up: read("flags").and_then(|f| {
            let flags = u32::from_str_radix(f.trim_start_matches("0x"), 16).ok()?;
            Some(flags & 1 == 1)
        }),
    }
}

/// `list_net`: every entry of `/sys/class/net` with MAC and link state.
pub fn list_net(root: &Path) -> HandlerResult<InterfacesReply> {
    let dir = root.join("sys/class/net");
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
    let mut interfaces = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| HandlerError::io(format!("read_dir {}", dir.display()), e))?;
        if let Some(name) = entry.file_name().to_str() {
            interfaces.push(describe(&entry.path(), name));
        }
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(InterfacesReply { interfaces })
}

/// Refuses arguments a helper program could read as options.
fn check_argument(what: &str, value: &str) -> HandlerResult<()> {
    if value.is_empty() || value.starts_with('-') || value.contains(char::is_whitespace) {
        return Err(HandlerError::InvalidArgument(format!(
            "invalid {what} {value:?}"
        )));
    }
    Ok(())
}

fn run_checked(system: &dyn System, program: &str, args: &[&str]) -> HandlerResult<()> {
    let out = system
        .run(program, args)
        .map_err(|e| HandlerError::io(format!("run {program}"), e))?;
    if out.success {
        Ok(())
    } else {
        Err(HandlerError::CommandFailed(format!(
            "{program} {}: {}",
            args.join(" "),
            out.output.trim()
        )))
    }
}

/// `set_address`: `ip addr add <address> dev <interface>` then
/// `ip link set <interface> up`.
pub fn set_address(
    root: &Path,
    system: &dyn System,
    interface: &str,
    address: &str,
) -> HandlerResult<Empty> {
    check_name("interface", interface)?;
    check_argument("address", address)?;
    let dir = root.join("sys/class/net").join(interface);
    if !dir.exists() {
        return Err(HandlerError::NotFound(format!(
            "no interface {interface} ({} missing)",
            dir.display()
        )));
    }
    run_checked(system, "ip", &["addr", "add", address, "dev", interface])?;
    run_checked(system, "ip", &["link", "set", interface, "up"])?;
    Ok(Empty {})
}

/// `set_link`: `ip link set <interface> up|down`.
pub fn set_link(
    root: &Path,
    system: &dyn System,
    interface: &str,
    up: bool,
) -> HandlerResult<Empty> {
    check_name("interface", interface)?;
    let dir = root.join("sys/class/net").join(interface);
    if !dir.exists() {
        return Err(HandlerError::NotFound(format!(
            "no interface {interface} ({} missing)",
            dir.display()
        )));
    }
    let state = if up { "up" } else { "down" };
    run_checked(system, "ip", &["link", "set", interface, state])?;
    Ok(Empty {})
}

/// `ping_host`: `ping -c <count> -W <timeout> <address>`; unreachable is a
/// result (`reachable: false`), not an error.
pub fn ping_host(
    system: &dyn System,
    address: &str,
    count: u32,
    timeout_secs: u32,
) -> HandlerResult<PingHostReply> {
    check_argument("address", address)?;
    if count == 0 || count > 100 {
        return Err(HandlerError::InvalidArgument(format!(
            "count {count} is not in 1..=100"
        )));
    }
    let count = count.to_string();
    let timeout = timeout_secs.max(1).to_string();
    let out = system
        .run("ping", &["-c", &count, "-W", &timeout, address])
        .map_err(|e| HandlerError::io("run ping", e))?;
    Ok(PingHostReply {
        reachable: out.success,
        output: out.output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use crate::system::fake::FakeSystem;
    use std::fs;

    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let eth0 = root.path().join("sys/class/net/eth0");
        fs::create_dir_all(&eth0).unwrap();
        fs::write(eth0.join("address"), "52:54:00:12:34:56\n").unwrap();
        fs::write(eth0.join("operstate"), "up\n").unwrap();
        fs::write(eth0.join("carrier"), "1\n").unwrap();
        fs::write(eth0.join("mtu"), "1500\n").unwrap();
        fs::write(eth0.join("flags"), "0x1003\n").unwrap();
        let lo = root.path().join("sys/class/net/lo");
        fs::create_dir_all(&lo).unwrap();
        fs::write(lo.join("address"), "00:00:00:00:00:00\n").unwrap();
        fs::write(lo.join("operstate"), "unknown\n").unwrap();
        root
    }

    #[test]
    fn lists_interfaces() {
        let root = fake_root();
        let reply = list_net(root.path()).unwrap();
        assert_eq!(
            reply.interfaces,
            vec![
                Interface {
                    name: "eth0".into(),
                    mac: "52:54:00:12:34:56".into(),
                    operstate: "up".into(),
                    carrier: Some(true),
                    mtu: Some(1500),
                    admin_up: Some(true),
                },
                Interface {
                    name: "lo".into(),
                    mac: "00:00:00:00:00:00".into(),
                    operstate: "unknown".into(),
                    carrier: None,
                    mtu: None,
                    admin_up: None,
                },
            ]
        );
    }

    #[test]
    fn set_address_runs_ip() {
        let root = fake_root();
        let system = FakeSystem::default();
        set_address(root.path(), &system, "eth0", "10.0.0.2/24").unwrap();
        assert_eq!(
            system.commands(),
            vec![
                "ip addr add 10.0.0.2/24 dev eth0".to_owned(),
                "ip link set eth0 up".to_owned()
            ]
        );
    }

    #[test]
    fn set_address_errors() {
        let root = fake_root();
        let system = FakeSystem::default();
        let kind = |e: HandlerError| e.to_body().kind;
        assert_eq!(
            kind(set_address(root.path(), &system, "eth9", "10.0.0.2/24").unwrap_err()),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(set_address(root.path(), &system, "eth0", "-f").unwrap_err()),
            ErrorKind::InvalidArgument
        );
        system.fail_commands(true);
        assert_eq!(
            kind(set_address(root.path(), &system, "eth0", "10.0.0.2/24").unwrap_err()),
            ErrorKind::CommandFailed
        );
    }

    #[test]
    fn set_link_runs_ip() {
        let root = fake_root();
        let system = FakeSystem::default();
        set_link(root.path(), &system, "eth0", true).unwrap();
        set_link(root.path(), &system, "eth0", false).unwrap();
        assert_eq!(
            system.commands(),
            vec![
                "ip link set eth0 up".to_owned(),
                "ip link set eth0 down".to_owned()
            ]
        );
        assert!(set_link(root.path(), &system, "eth7", true).is_err());
    }

    #[test]
    fn ping_reports_reachability() {
        let system = FakeSystem::default();
        let reply = ping_host(&system, "10.0.0.1", 2, 3).unwrap();
        assert!(reply.reachable);
        assert_eq!(
            system.commands(),
            vec!["ping -c 2 -W 3 10.0.0.1".to_owned()]
        );
        system.fail_commands(true);
        assert!(!ping_host(&system, "10.0.0.1", 1, 1).unwrap().reachable);
        assert!(ping_host(&system, "10.0.0.1", 0, 1).is_err());
    }
}
