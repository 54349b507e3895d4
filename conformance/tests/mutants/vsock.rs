//! Mutants of the vsock area.

use async_trait::async_trait;
use uvm_api::{Error, Resource, Result, Uvm, VMADDR_PORT_ANY, VsockListener, VsockStream};

use crate::Mutant;
use crate::lie::{Lie, vsock};

/// Ports are kept in 16 bits: the backend truncates them on listen and connect.
struct PortsTruncated;
#[async_trait]
impl Lie for PortsTruncated {
    async fn listen(&self, vm: &dyn Uvm, port: u32) -> Result<Box<dyn VsockListener>> {
        let port = if port == VMADDR_PORT_ANY {
            port
        } else {
            port & 0xffff
        };
        vsock(vm).listen(port).await
    }
    async fn connect(&self, vm: &dyn Uvm, port: u32) -> Result<VsockStream> {
        let port = if port == VMADDR_PORT_ANY {
            port
        } else {
            port & 0xffff
        };
        vsock(vm).connect(port).await
    }
}

/// A connect nobody in the guest answers gives NotFound instead of Io.
struct RefusedConnectNotFound;
#[async_trait]
impl Lie for RefusedConnectNotFound {
    async fn connect(&self, vm: &dyn Uvm, port: u32) -> Result<VsockStream> {
        match vsock(vm).connect(port).await {
            Err(Error::Io { .. }) => Err(Error::not_found(Resource::VmSocket, port.to_string())),
            other => other,
        }
    }
}

/// listen(VMADDR_PORT_ANY) picks a free port instead of refusing.
struct PortAnyPicksAPort;
#[async_trait]
impl Lie for PortAnyPicksAPort {
    async fn listen(&self, vm: &dyn Uvm, port: u32) -> Result<Box<dyn VsockListener>> {
        let port = if port == VMADDR_PORT_ANY {
            49_999
        } else {
            port
        };
        vsock(vm).listen(port).await
    }
}

/// A second listener on a live port is refused with Io, not AlreadyExists.
struct PortTakenIo;
#[async_trait]
impl Lie for PortTakenIo {
    async fn listen(&self, vm: &dyn Uvm, port: u32) -> Result<Box<dyn VsockListener>> {
        match vsock(vm).listen(port).await {
            Err(Error::AlreadyExists { .. }) => Err(Error::io(
                format!("listening on vsock port {port}"),
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
            )),
            other => other,
        }
    }
}

/// The mutants of this file.
pub fn mutants() -> Vec<Mutant> {
    vec![
        Mutant {
            name: "vsock ports truncated to 16 bits",
            promise: "vsock.ports_are_32_bit",
            lie: || Box::new(PortsTruncated),
            caught_by: &["vsock_ports_above_16_bits_are_distinct"],
            collateral: &[],
        },
        Mutant {
            name: "a refused vsock connect gives NotFound",
            promise: "vsock.connect_refused_io",
            lie: || Box::new(RefusedConnectNotFound),
            caught_by: &["vsock_connect_without_listener_io_error"],
            collateral: &[],
        },
        Mutant {
            name: "listen on VMADDR_PORT_ANY picks a port",
            promise: "vsock.port_any_invalid_argument",
            lie: || Box::new(PortAnyPicksAPort),
            caught_by: &["vsock_port_any_invalid_argument"],
            collateral: &[],
        },
        Mutant {
            name: "a vsock port in use is Io",
            promise: "vsock.port_taken_already_exists",
            lie: || Box::new(PortTakenIo),
            caught_by: &["vsock_port_twice_already_exists"],
            // It listens twice on a port above 16 bits to see it is taken.
            collateral: &["vsock_ports_above_16_bits_are_distinct"],
        },
    ]
}
