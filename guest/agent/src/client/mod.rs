//! The host side of the agent protocol (feature `client`): [`AgentClient`]
//! talks to the agent over any async byte stream and implements
//! [`uvm_api::GuestProbe`].
//!
//! A backend builds one from its vsock manager and the agent port:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn f(vsock: Arc<dyn uvm_api::VmSocketManager>) {
//! use uvm_guest_agent::client::AgentClient;
//! let probe = AgentClient::over_vsock(vsock, uvm_guest_agent::DEFAULT_PORT);
//! # }
//! ```
//!
//! The client keeps one connection (opened on first use, with a `ping`
//! handshake that checks the protocol version) behind a mutex and opens a
//! new one when it breaks; a request that fails on a reused connection
//! because it broke is retried once on a fresh one, unless it has side
//! effects a retry could repeat (mount, power actions). `vsock_dial` runs
//! on a connection of its own, so several dials (and other requests) can
//! be in flight at once. Every request, connecting included, is bounded by
//! the client's timeout ([`DEFAULT_TIMEOUT`]); running out gives
//! [`uvm_api::Error::Timeout`] and the connection is dropped.

mod connection;
mod errors;
mod probe;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, warn};
use uvm_api::{Error, Result, VmSocketManager};

pub use connection::{AgentConnector, MAX_RESPONSE_LINE, VsockConnector};
pub use errors::AgentError;
pub use probe::{SHARE_MOUNT_DIR, scsi_address, share_mount_point};

use connection::Connection;
use errors::{Subject, agent_error, is_broken_connection, is_refused};

use crate::protocol::{Op, PROTOCOL_VERSION, PingReply, Request, Response};

/// How long a request may take unless [`AgentClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest pause between two connection attempts while the agent refuses.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// How a request uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// On the shared connection; `retry` once on a fresh one if it broke.
    Shared {
        /// Whether repeating the request is harmless.
        retry: bool,
    },
    /// On the shared connection, which is closed afterwards (power actions
    /// end the agent's session).
    Last,
    /// On a connection of its own, closed afterwards.
    Dedicated,
}

/// A client of the uvm guest agent.
pub struct AgentClient {
    connector: Arc<dyn AgentConnector>,
    connection: Mutex<Option<Connection>>,
    next_id: AtomicU64,
    timeout: Duration,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The wire name of an operation (its `op` field).
fn op_name(op: &Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.get("op").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "request".to_owned())
}

impl AgentClient {
    /// A client opening its connections with `connector`.
    pub fn new(connector: impl AgentConnector + 'static) -> Self {
        Self {
            connector: Arc::new(connector),
            connection: Mutex::new(None),
            next_id: AtomicU64::new(1),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client connecting through `manager` to the agent on `port`
    /// (normally [`crate::DEFAULT_PORT`]).
    pub fn over_vsock<M: VmSocketManager + ?Sized + 'static>(manager: Arc<M>, port: u32) -> Self {
        Self::new(VsockConnector::new(manager, port))
    }

    /// Sets the per-request timeout (connecting included).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks the agent answers; returns its version and protocol.
    pub async fn ping(&self) -> Result<PingReply> {
        self.call(Op::Ping).await
    }

    /// Sends any operation on the shared connection and decodes its result
    /// (the `*Reply` type of the operation in [`crate::protocol`]).
    pub async fn call<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        let mode = match op {
            Op::PowerOff | Op::Reboot | Op::Panic => Mode::Last,
            Op::VsockDial { .. } => Mode::Dedicated,
            _ => Mode::Shared {
                retry: repeatable(&op),
            },
        };
        self.request(op, &Subject::None, mode).await
    }

    /// Closes the shared connection (the next request opens a new one).
    pub async fn disconnect(&self) {
        *self.connection.lock().await = None;
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `op` and decodes its result, mapping agent errors with `subject`.
    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        op: Op,
        subject: &Subject,
        mode: Mode,
    ) -> Result<T> {
        let name = op_name(&op);
        let deadline = Instant::now() + self.timeout;
        let exchange = async {
            match mode {
                Mode::Dedicated => {
                    let mut connection = self.open(&name, deadline).await?;
                    connection
                        .exchange(&name, &Request::new(self.next_id(), op))
                        .await
                }
                Mode::Shared { retry } => self.on_shared(&name, op, deadline, retry, false).await,
                Mode::Last => self.on_shared(&name, op, deadline, false, true).await,
            }
        };
        let response = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| {
                warn!(op = %name, after = ?self.timeout, "guest agent request timed out");
                Error::Timeout {
                    operation: format!("guest agent {name}"),
                    after: self.timeout,
                }
            })??;
        match response.result {
            Ok(value) => serde_json::from_value(value).map_err(|e| {
                AgentError::BadResponse {
                    op: name.clone(),
                    reason: format!("unexpected result: {e}"),
                }
                .into_api()
            }),
            Err(body) => Err(agent_error(&name, body, subject)),
        }
    }

    /// Runs one exchange on the shared connection, (re)connecting first if
    /// there is none or it is out of step.
    async fn on_shared(
        &self,
        name: &str,
        op: Op,
        deadline: Instant,
        retry: bool,
        last: bool,
    ) -> Result<Response> {
        let mut slot = self.connection.lock().await;
        let mut retried = false;
        loop {
            let reused = slot.as_ref().is_some_and(Connection::usable);
            if !reused {
                *slot = None;
                *slot = Some(self.open(name, deadline).await?);
            }
            let Some(connection) = slot.as_mut() else {
                continue;
            };
            let request = Request::new(self.next_id(), op.clone());
            match connection.exchange(name, &request).await {
                Ok(response) => {
                    if last {
                        *slot = None;
                    }
                    return Ok(response);
                }
                Err(error) => {
                    *slot = None;
                    if reused && retry && !retried && is_broken_connection(&error) {
                        debug!(op = name, %error, "guest agent connection broke; retrying on a new one");
                        retried = true;
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Opens a connection and checks the protocol version with a `ping`,
    /// retrying refused connections (the agent may be starting) until `deadline`.
    async fn open(&self, name: &str, deadline: Instant) -> Result<Connection> {
        let mut delay = Duration::from_millis(20);
        let stream = loop {
            match self.connector.connect().await {
                Ok(stream) => break stream,
                Err(error) if is_refused(&error) => {
                    if Instant::now() + delay >= deadline {
                        return Err(Error::Timeout {
                            operation: format!(
                                "connecting to the guest agent for {name} (last attempt: {error})"
                            ),
                            after: self.timeout,
                        });
                    }
                    debug!(op = name, %error, ?delay, "guest agent not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
                }
                Err(error) => return Err(error),
            }
        };
        let mut connection = Connection::new(stream);
        let response = connection
            .exchange("ping", &Request::new(self.next_id(), Op::Ping))
            .await?;
        let ping: PingReply = match response.result {
            Ok(value) => serde_json::from_value(value).map_err(|e| {
                AgentError::BadResponse {
                    op: "ping".to_owned(),
                    reason: e.to_string(),
                }
                .into_api()
            })?,
            Err(body) => return Err(agent_error("ping", body, &Subject::None)),
        };
        if ping.protocol != PROTOCOL_VERSION {
            return Err(AgentError::VersionMismatch {
                detail: format!(
                    "agent {} speaks protocol version {}, this client speaks {PROTOCOL_VERSION}",
                    ping.agent_version, ping.protocol
                ),
            }
            .into_api());
        }
        debug!(agent_version = %ping.agent_version, "connected to the guest agent");
        Ok(connection)
    }
}

/// Whether repeating `op` after a broken connection is harmless.
fn repeatable(op: &Op) -> bool {
    !matches!(
        op,
        Op::Mount { .. }
            | Op::Unmount { .. }
            | Op::SetAddress { .. }
            | Op::VsockEcho { .. }
            | Op::VsockDial { .. }
            | Op::Flood(_)
            | Op::DiskBench(_)
            | Op::VsockSink { .. }
            | Op::VsockSend { .. }
            | Op::NetSend { .. }
            | Op::PowerOff
            | Op::Reboot
            | Op::Panic
    )
}
