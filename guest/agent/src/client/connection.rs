//! Opening connections to the agent and exchanging one request line for
//! one response line on them.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::{debug, trace};
use uvm_api::{Result, VmSocketManager, VsockStream};

use super::errors::{AgentError, connection_error};
use crate::protocol::{self, PROTOCOL_VERSION, Request, Response};
use crate::server::MAX_LINE;

/// The longest response line accepted: a 1 MiB read is 2 MiB of hex, so
/// this leaves ample room.
pub const MAX_RESPONSE_LINE: usize = 2 * MAX_LINE;

/// Opens a fresh byte stream to the agent (a new vsock connection).
#[async_trait]
pub trait AgentConnector: Send + Sync {
    /// Connects. A refused or reset connection (`Io` with
    /// `ConnectionRefused`/`ConnectionReset`) is retried by the client
    /// until its request times out, since the agent may still be starting.
    async fn connect(&self) -> Result<VsockStream>;
}

/// Any `Fn() -> impl Future<Output = Result<VsockStream>>` is a connector.
#[async_trait]
impl<F, Fut> AgentConnector for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<VsockStream>> + Send,
{
    async fn connect(&self) -> Result<VsockStream> {
        self().await
    }
}

/// Connects through a VM's [`VmSocketManager`] to the agent's port
/// (normally [`crate::DEFAULT_PORT`]).
pub struct VsockConnector<M: ?Sized> {
    manager: Arc<M>,
    port: u32,
}

impl<M: ?Sized> VsockConnector<M> {
    /// A connector to `port` through `manager`.
    pub fn new(manager: Arc<M>, port: u32) -> Self {
        Self { manager, port }
    }

    /// The agent port it connects to.
    pub fn port(&self) -> u32 {
        self.port
    }
}

impl<M: ?Sized> std::fmt::Debug for VsockConnector<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsockConnector")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<M: VmSocketManager + ?Sized> AgentConnector for VsockConnector<M> {
    async fn connect(&self) -> Result<VsockStream> {
        self.manager.connect(self.port).await
    }
}

/// One open connection to the agent.
pub(crate) struct Connection {
    stream: BufReader<VsockStream>,
    /// Set while a request is written and its response not yet read: a
    /// connection left in this state (a timed-out or cancelled call) is
    /// out of step and must not be reused.
    in_flight: bool,
}

impl Connection {
    /// Wraps a fresh stream (the handshake is the caller's).
    pub(crate) fn new(stream: VsockStream) -> Self {
        Self {
            stream: BufReader::new(stream),
            in_flight: false,
        }
    }

    /// Whether the connection may carry another request.
    pub(crate) fn usable(&self) -> bool {
        !self.in_flight
    }

    /// Sends `request` and reads its response, checking version and id.
    pub(crate) async fn exchange(&mut self, op: &str, request: &Request) -> Result<Response> {
        let mut line = protocol::encode(request).map_err(|e| {
            AgentError::BadResponse {
                op: op.to_owned(),
                reason: format!("cannot encode the request: {e}"),
            }
            .into_api()
        })?;
        line.push('\n');
        trace!(op, id = request.id, bytes = line.len(), "agent request");
        self.in_flight = true;
        let io = |e| connection_error(op, e);
        self.stream.write_all(line.as_bytes()).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE_LINE + 1).unwrap_or(u64::MAX);
        let n = (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(io)?;
        if !buf.ends_with(b"\n") {
            if n > MAX_RESPONSE_LINE {
                return Err(bad(
                    op,
                    format!("response line over {MAX_RESPONSE_LINE} bytes"),
                ));
            }
            return Err(connection_error(
                op,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the guest agent closed the connection without answering",
                ),
            ));
        }
        self.in_flight = false;
        let response: Response =
            serde_json::from_slice(&buf).map_err(|e| bad(op, format!("not a response: {e}")))?;
        if response.v != PROTOCOL_VERSION {
            return Err(AgentError::VersionMismatch {
                detail: format!(
                    "the agent answered with protocol version {}, this client speaks {PROTOCOL_VERSION}",
                    response.v
                ),
            }
            .into_api());
        }
        if response.id != request.id {
            // Out of step: refuse the connection from now on.
            self.in_flight = true;
            return Err(bad(
                op,
                format!(
                    "answer to request {} while {} was expected",
                    response.id, request.id
                ),
            ));
        }
        debug!(
            op,
            id = request.id,
            ok = response.result.is_ok(),
            "agent response"
        );
        Ok(response)
    }
}

fn bad(op: &str, reason: String) -> uvm_api::Error {
    AgentError::BadResponse {
        op: op.to_owned(),
        reason,
    }
    .into_api()
}
