//! The agent client's connection handling: reconnects, timeouts, protocol
//! version checks, connector errors.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Guest, tokio_stream};
use uvm_api::{Error, GuestProbe, State, VsockStream};
use uvm_guest_agent::client::AgentClient;

#[tokio::test]
async fn reconnects_after_the_agent_side_drops() {
    let guest = Guest::new();
    let client = guest.client();
    let ping = client.ping().await.unwrap();
    assert_eq!(ping.protocol, 1);
    assert_eq!(guest.connections(), 1);
    guest.drop_connections();
    // The broken connection is noticed and the request retried on a new one.
    assert_eq!(
        client.uptime().await.unwrap(),
        Duration::from_millis(12_500)
    );
    assert_eq!(guest.connections(), 2);
    client.uptime().await.unwrap();
    assert_eq!(guest.connections(), 2);
    client.disconnect().await;
    client.uptime().await.unwrap();
    assert_eq!(guest.connections(), 3);
}

/// A connector whose peer reads nothing and answers nothing.
fn silent() -> (AgentClient, Arc<Mutex<Vec<UnixStream>>>) {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let kept = peers.clone();
    let client = AgentClient::new(move || {
        let (peer, host) = UnixStream::pair().unwrap();
        kept.lock().unwrap().push(peer);
        let stream: uvm_api::Result<VsockStream> = Ok(tokio_stream(host));
        async move { stream }
    });
    (client, peers)
}

#[tokio::test]
async fn times_out_when_the_agent_never_answers() {
    let (client, _peers) = silent();
    let client = client.with_timeout(Duration::from_millis(200));
    assert_eq!(client.timeout(), Duration::from_millis(200));
    let start = Instant::now();
    let error = client.uptime().await.unwrap_err();
    assert!(
        matches!(&error, Error::Timeout { after, .. } if *after == Duration::from_millis(200)),
        "{error:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A fake agent answering every line with `answer(id)`.
fn scripted(answer: fn(u64) -> String) -> AgentClient {
    AgentClient::new(move || {
        let (peer, host) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut writer = peer.try_clone().unwrap();
            for line in BufReader::new(peer).lines() {
                let request: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                let id = request["id"].as_u64().unwrap();
                if writeln!(writer, "{}", answer(id)).is_err() {
                    return;
                }
            }
        });
        let stream: uvm_api::Result<VsockStream> = Ok(tokio_stream(host));
        async move { stream }
    })
}

fn assert_version_mismatch(error: &Error) {
    assert!(matches!(error, Error::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("version"), "{error}");
}

#[tokio::test]
async fn protocol_version_is_checked() {
    // Responses of another version.
    let client = scripted(|id| format!(r#"{{"v":2,"id":{id},"ok":{{}}}}"#));
    assert_version_mismatch(&client.uptime().await.unwrap_err());
    // A handshake announcing another protocol.
    let client = scripted(|id| {
        format!(r#"{{"v":1,"id":{id},"ok":{{"pong":true,"agent_version":"9.0.0","protocol":2}}}}"#)
    });
    assert_version_mismatch(&client.uptime().await.unwrap_err());
    // An agent refusing our version.
    let client = scripted(|id| {
        format!(
            r#"{{"v":1,"id":{id},"error":{{"kind":"unsupported_version","message":"this agent speaks 2"}}}}"#
        )
    });
    assert_version_mismatch(&client.uptime().await.unwrap_err());
}

#[tokio::test]
async fn malformed_and_out_of_step_answers_are_backend_errors() {
    let client = scripted(|_| "not json".to_owned());
    let error = client.ping().await.unwrap_err();
    assert!(matches!(error, Error::Backend(_)), "{error:?}");
    let client = scripted(|id| format!(r#"{{"v":1,"id":{},"ok":{{}}}}"#, id + 100));
    let error = client.ping().await.unwrap_err();
    assert!(error.to_string().contains("expected"), "{error}");
}

#[tokio::test]
async fn agent_errors_are_typed() {
    let client = scripted(|id| {
        if id == 1 {
            r#"{"v":1,"id":1,"ok":{"pong":true,"agent_version":"0.1.0","protocol":1}}"#.to_owned()
        } else {
            format!(
                r#"{{"v":1,"id":{id},"error":{{"kind":"io","message":"open /dev/vda: Read-only file system (os error 30)","errno":30}}}}"#
            )
        }
    });
    let error = client.write_block("vda", 0, b"x").await.unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
        "{error:?}"
    );
    assert!(error.to_string().contains("Read-only"), "{error}");
}

#[tokio::test]
async fn waits_for_a_refusing_agent_then_connects() {
    let guest = Guest::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    // Refuse twice (the agent is "starting"), then serve a real session.
    let agent = guest.agent.clone();
    let client = AgentClient::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let agent = agent.clone();
        let result: uvm_api::Result<VsockStream> = if n < 2 {
            Err(Error::io(
                "connect",
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ))
        } else {
            let (peer, host) = UnixStream::pair().unwrap();
            std::thread::spawn(move || {
                let reader = BufReader::new(peer.try_clone().unwrap());
                let _ = uvm_guest_agent::server::serve(&agent, reader, peer);
            });
            Ok(tokio_stream(host))
        };
        async move { result }
    });
    assert_eq!(
        client.uptime().await.unwrap(),
        Duration::from_millis(12_500)
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);

    // A connector that always refuses runs out of time, saying why.
    let client = AgentClient::new(|| async {
        Err::<VsockStream, _>(Error::io(
            "connect",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))
    })
    .with_timeout(Duration::from_millis(150));
    let error = client.ping().await.unwrap_err();
    assert!(
        matches!(&error, Error::Timeout { operation, .. } if operation.contains("refused")),
        "{error:?}"
    );
}

#[tokio::test]
async fn other_connector_errors_pass_through() {
    let client = AgentClient::new(|| async {
        Err::<VsockStream, _>(Error::InvalidState {
            operation: "connect".into(),
            state: State::Stopped,
        })
    });
    let error = client.uptime().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidState {
                state: State::Stopped,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let guest = Guest::new();
    let client = guest.client();
    let (a, b, c) = tokio::join!(client.uptime(), client.ping(), client.block_devices());
    a.unwrap();
    b.unwrap();
    assert_eq!(c.unwrap().len(), 3);
    assert_eq!(guest.connections(), 1);
}
