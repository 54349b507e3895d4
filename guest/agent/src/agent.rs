//! Dispatch: turns a [`Request`] into a [`Response`] (and maybe a power
//! action to perform once the response is on its way).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::handlers::{self, HandlerError, HandlerResult};
use crate::protocol::{Empty, ErrorKind, Op, PROTOCOL_VERSION, PingReply, Request, Response};
use crate::system::{PowerAction, System};

/// The agent: a root to inspect and a [`System`] for side effects.
#[derive(Clone)]
pub struct Agent {
    root: PathBuf,
    system: Arc<dyn System>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What handling a request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The response to send.
    pub response: Response,
    /// A power action to perform after the response has been sent.
    pub then: Option<PowerAction>,
}

fn to_value<T: Serialize>(result: HandlerResult<T>) -> Result<Value, HandlerError> {
    let reply = result?;
    serde_json::to_value(reply).map_err(|e| {
        HandlerError::io(
            "encode reply",
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

impl Agent {
    /// An agent inspecting `root` (normally `/`).
    pub fn new(root: impl Into<PathBuf>, system: Arc<dyn System>) -> Self {
        Self {
            root: root.into(),
            system,
        }
    }

    /// The root this agent inspects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Performs a power action through the agent's [`System`].
    pub fn perform(&self, action: PowerAction) -> std::io::Result<()> {
        self.system.power(action)
    }

    /// Handles one decoded request.
    pub fn handle(&self, request: &Request) -> Handled {
        if request.v != PROTOCOL_VERSION {
            return Handled {
                response: Response::error(
                    request.id,
                    ErrorKind::UnsupportedVersion,
                    format!(
                        "protocol version {} is not supported; this agent speaks {PROTOCOL_VERSION}",
                        request.v
                    ),
                ),
                then: None,
            };
        }
        let root = self.root.as_path();
        let system = self.system.as_ref();
        let mut then = None;
        let result = match &request.op {
            Op::Ping => to_value(Ok(PingReply {
                pong: true,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: PROTOCOL_VERSION,
            })),
            Op::ListBlock => to_value(handlers::block::list_block(root)),
            Op::ListPmem => to_value(handlers::block::list_pmem(root)),
            Op::Read {
                device,
                offset,
                len,
            } => to_value(handlers::block::read(root, device, *offset, *len)),
            Op::Write {
                device,
                offset,
                data,
                sync,
            } => to_value(handlers::block::write(root, device, *offset, data, *sync)),
            Op::ListNet => to_value(handlers::net::list_net(root)),
            Op::SetAddress { interface, address } => {
                to_value(handlers::net::set_address(root, system, interface, address))
            }
            Op::PingHost {
                address,
                count,
                timeout_secs,
            } => to_value(handlers::net::ping_host(
                system,
                address,
                *count,
                *timeout_secs,
            )),
            Op::Mount {
                tag,
                path,
                read_only,
            } => to_value(handlers::fs::mount(root, system, tag, path, *read_only)),
            Op::Unmount { path } => to_value(handlers::fs::unmount(root, system, path)),
            Op::ReadFile { path, offset, len } => {
                to_value(handlers::fs::read_file(root, path, *offset, *len))
            }
            Op::ListDir { path } => to_value(handlers::fs::list_dir(root, path)),
            Op::WaitDevice {
                name,
                class,
                present,
                timeout_ms,
            } => to_value(handlers::wait::wait_device(
                root,
                name,
                *class,
                *present,
                *timeout_ms,
            )),
            Op::SetLink { interface, up } => {
                to_value(handlers::net::set_link(root, system, interface, *up))
            }
            Op::ListScsiHosts => to_value(handlers::scsi::list_scsi_hosts(root)),
            Op::ListShares => to_value(handlers::shares::list_shares(root)),
            Op::Writable { path } => to_value(handlers::shares::writable(root, system, path)),
            Op::WriteFile { path, data, sync } => {
                to_value(handlers::fs::write_file(root, path, data, *sync))
            }
            Op::VsockDial {
                port,
                data,
                timeout_ms,
            } => to_value(handlers::vsock::vsock_dial(
                system,
                *port,
                data,
                *timeout_ms,
            )),
            Op::VsockEcho { port } => to_value(handlers::vsock::vsock_echo(system, *port)),
            Op::Flood(plan) => to_value(handlers::flood::flood(system, plan)),
            Op::DiskBench(plan) => to_value(handlers::iobench::disk_bench(root, plan)),
            Op::VsockSink { port, timeout_ms } => {
                to_value(handlers::iobench::vsock_sink(system, *port, *timeout_ms))
            }
            Op::VsockSend {
                port,
                bytes,
                timeout_ms,
            } => to_value(handlers::iobench::vsock_send(
                system,
                *port,
                *bytes,
                *timeout_ms,
            )),
            Op::NetSend {
                interface,
                bytes,
                frame_len,
                timeout_ms,
            } => to_value(handlers::iobench::net_send(
                system,
                interface,
                *bytes,
                *frame_len,
                *timeout_ms,
            )),
            Op::Uptime => to_value(handlers::proc::uptime(root)),
            Op::Meminfo => to_value(handlers::proc::meminfo(root)),
            Op::PowerOff | Op::Reboot | Op::Panic => {
                then = Some(match request.op {
                    Op::PowerOff => PowerAction::PowerOff,
                    Op::Reboot => PowerAction::Reboot,
                    _ => PowerAction::Panic,
                });
                to_value(Ok(Empty {}))
            }
        };
        let response = match result {
            Ok(value) => Response::ok(request.id, value),
            Err(error) => Response {
                v: PROTOCOL_VERSION,
                id: request.id,
                result: Err(error.to_body()),
            },
        };
        Handled { response, then }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::fake::FakeSystem;
    use serde_json::json;

    fn agent() -> (Agent, Arc<FakeSystem>, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let system = Arc::new(FakeSystem::default());
        (Agent::new(root.path(), system.clone()), system, root)
    }

    #[test]
    fn ping_answers_pong() {
        let (agent, _, _root) = agent();
        let handled = agent.handle(&Request::new(1, Op::Ping));
        assert_eq!(handled.then, None);
        let value = handled.response.result.unwrap();
        assert_eq!(value["pong"], json!(true));
        assert_eq!(value["protocol"], json!(1));
    }

    #[test]
    fn power_actions_come_after_the_response() {
        let (agent, system, _root) = agent();
        for (op, action) in [
            (Op::PowerOff, PowerAction::PowerOff),
            (Op::Reboot, PowerAction::Reboot),
            (Op::Panic, PowerAction::Panic),
        ] {
            let handled = agent.handle(&Request::new(2, op));
            assert_eq!(handled.response.result, Ok(json!({})));
            assert_eq!(handled.then, Some(action));
        }
        // handle() itself performs nothing.
        assert!(system.power_actions().is_empty());
    }

    #[test]
    fn handler_errors_become_error_responses() {
        let (agent, _, _root) = agent();
        let handled = agent.handle(&Request::new(3, Op::ListBlock));
        assert_eq!(handled.response.id, 3);
        assert_eq!(
            handled.response.result.unwrap_err().kind,
            ErrorKind::NotFound
        );
    }

    #[test]
    fn wrong_version_is_refused() {
        let (agent, _, _root) = agent();
        let mut request = Request::new(4, Op::Ping);
        request.v = 2;
        let handled = agent.handle(&request);
        assert_eq!(
            handled.response.result.unwrap_err().kind,
            ErrorKind::UnsupportedVersion
        );
    }
}
