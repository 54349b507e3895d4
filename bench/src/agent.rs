//! The agent's first answer over `AF_VSOCK` from the VMM's host (for QEMU
//! with vhost-vsock): connect, send a protocol `ping`, read one line.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};

/// The request line: protocol version 1, `ping`.
pub const PING: &str = "{\"v\":1,\"id\":1,\"op\":\"ping\"}\n";

/// Whether `line` is the agent's successful answer to [`PING`].
pub fn is_pong(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line.trim())
        .ok()
        .and_then(|v| v.get("ok")?.get("pong")?.as_bool())
        .unwrap_or(false)
}

/// One attempt: connect to `cid:port`, ping, and read the answer.
pub fn ping_once(cid: u32, port: u32, timeout: Duration) -> std::io::Result<bool> {
    let mut stream = uvm_guest_agent::vsock::connect(cid, port, timeout)?;
    stream.write_all(PING.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(is_pong(&line))
}

/// Pings `cid:port` until the agent answers; gives up at `deadline` or when
/// `alive` says the VM is gone. Returns the number of attempts.
pub fn ping_until(
    cid: u32,
    port: u32,
    deadline: Instant,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<u32> {
    let started = Instant::now();
    let mut attempts = 0;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        alive()?;
        attempts += 1;
        match ping_once(cid, port, Duration::from_secs(2)) {
            Ok(true) => return Ok(attempts),
            Ok(false) => last = "an answer that is not a pong".into(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(BenchError::Timeout {
        what: format!("an agent answer on vsock {cid}:{port} (last attempt: {last})"),
        after: started.elapsed(),
    })
}

/// A command line as text (for the log).
pub fn display_command(command: &std::process::Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_pongs() {
        assert!(is_pong(
            r#"{"v":1,"id":1,"ok":{"pong":true,"agent_version":"0.1.0","protocol":1}}"#
        ));
        assert!(!is_pong(
            r#"{"v":1,"id":1,"error":{"kind":"unknown_op","message":"x"}}"#
        ));
        assert!(!is_pong("garbage"));
        let request: serde_json::Value = serde_json::from_str(PING).unwrap();
        assert_eq!(request["op"], "ping");
    }
}
