//! vsock from the guest side: dialling a host port and echo listeners,
//! performed through [`System`] so tests need no vsock.

use std::time::Duration;

use super::{HandlerError, HandlerResult};
use crate::hex;
use crate::protocol::{DataReply, Empty, MAX_READ};
use crate::system::System;

/// The host's context id.
pub const HOST_CID: u32 = 2;

/// `VMADDR_PORT_ANY`: not a port one can dial or listen on by number.
const PORT_ANY: u32 = u32::MAX;

/// The longest dial timeout accepted (10 minutes).
pub const MAX_DIAL_TIMEOUT_MS: u64 = 600_000;

fn check_port(port: u32) -> HandlerResult<()> {
    if port == PORT_ANY {
        return Err(HandlerError::InvalidArgument(format!(
            "port {port} is VMADDR_PORT_ANY, not a real port"
        )));
    }
    Ok(())
}

/// `vsock_dial`: connects to the host on `port`, sends `data` (hex),
/// half-closes, and returns what the host sent back before closing.
pub fn vsock_dial(
    system: &dyn System,
    port: u32,
    data: &str,
    timeout_ms: u64,
) -> HandlerResult<DataReply> {
    check_port(port)?;
    let payload = hex::decode(data).map_err(|e| HandlerError::InvalidArgument(e.to_string()))?;
    if payload.len() as u64 > MAX_READ {
        return Err(HandlerError::InvalidArgument(format!(
            "a payload of {} bytes is over the limit of {MAX_READ} bytes",
            payload.len()
        )));
    }
    if timeout_ms == 0 || timeout_ms > MAX_DIAL_TIMEOUT_MS {
        return Err(HandlerError::InvalidArgument(format!(
            "timeout_ms {timeout_ms} is not in 1..={MAX_DIAL_TIMEOUT_MS}"
        )));
    }
    let reply = system
        .vsock_dial(
            HOST_CID,
            port,
            &payload,
            Duration::from_millis(timeout_ms),
            MAX_READ,
        )
        .map_err(|e| HandlerError::io(format!("vsock connection to host port {port}"), e))?;
    Ok(DataReply {
        len: reply.len() as u64,
        data: hex::encode(&reply),
    })
}

/// `vsock_echo`: starts an echo listener on guest port `port`.
pub fn vsock_echo(system: &dyn System, port: u32) -> HandlerResult<Empty> {
    check_port(port)?;
    system
        .vsock_echo(port)
        .map_err(|e| HandlerError::io(format!("vsock echo listener on port {port}"), e))?;
    Ok(Empty {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;
    use crate::system::fake::FakeSystem;

    #[test]
    fn dials_the_host() {
        let system = FakeSystem::default();
        system.set_host_reply(5000, b"re: ");
        let reply = vsock_dial(&system, 5000, "6869", 1000).unwrap();
        assert_eq!(hex::decode(&reply.data).unwrap(), b"re: hi");
        assert_eq!(system.dials(), vec![(5000, b"hi".to_vec())]);

        let error = vsock_dial(&system, 5001, "", 1000).unwrap_err().to_body();
        assert_eq!(error.kind, ErrorKind::Io);
        assert_eq!(error.errno, Some(libc::ECONNREFUSED));

        let kind = |e: HandlerError| e.to_body().kind;
        assert_eq!(
            kind(vsock_dial(&system, u32::MAX, "", 1000).unwrap_err()),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(vsock_dial(&system, 5000, "x", 1000).unwrap_err()),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(vsock_dial(&system, 5000, "", 0).unwrap_err()),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn starts_echo_listeners_once_per_port() {
        let system = FakeSystem::default();
        vsock_echo(&system, 6000).unwrap();
        let error = vsock_echo(&system, 6000).unwrap_err().to_body();
        assert_eq!(error.errno, Some(libc::EADDRINUSE));
        assert_eq!(system.echo_ports(), vec![6000]);
        assert!(vsock_echo(&system, u32::MAX).is_err());
    }
}
