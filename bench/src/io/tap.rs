//! The host side of the guest's NIC: its tap's receive counter and link.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// Where the kernel counts the bytes a tap received from its VMM.
pub fn rx_bytes_path(tap: &str) -> PathBuf {
    PathBuf::from(format!("/sys/class/net/{tap}/statistics/rx_bytes"))
}

/// Parses a sysfs counter.
pub fn parse_counter(text: &str) -> io::Result<u64> {
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}: {e}")))
}

/// The bytes `tap` has received from its VMM (the guest's transmissions).
pub fn rx_bytes(tap: &str) -> io::Result<u64> {
    parse_counter(&std::fs::read_to_string(rx_bytes_path(tap))?)
}

/// Sets `tap` administratively up (`SIOCSIFFLAGS` with `IFF_UP`), so that
/// the host takes the frames the VMM writes into it.
pub fn set_up(tap: &str) -> io::Result<()> {
    if tap.is_empty() || tap.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {tap:?}"),
        ));
    }
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(tap.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq it is given, which
    // outlives the call; the socket is open.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union's flags member was just written by SIOCGIFFLAGS.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq, valid for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse() {
        assert_eq!(parse_counter("12345\n").unwrap(), 12345);
        assert!(parse_counter("x").is_err());
        assert_eq!(
            rx_bytes_path("uvmio0"),
            PathBuf::from("/sys/class/net/uvmio0/statistics/rx_bytes")
        );
        assert!(set_up("").is_err());
        assert!(set_up("a-name-far-too-long-for-linux").is_err());
    }

    #[test]
    fn the_loopback_counter_reads() {
        // Every Linux host has `lo`.
        assert!(rx_bytes("lo").is_ok());
    }
}
