//! A minimal QMP client (QEMU's JSON machine protocol) over a unix socket:
//! one JSON object per line; `qmp_capabilities` first; events that arrive
//! between a command and its answer are kept for [`Qmp::wait_event`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{BenchError, Result};

/// How long a command may take to be answered.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting (`{"QMP": ...}`).
    Greeting,
    /// A command's successful answer.
    Return(Value),
    /// A command's failure.
    Error {
        /// Error class.
        class: String,
        /// Description.
        desc: String,
    },
    /// An asynchronous event.
    Event {
        /// Its name (`DEVICE_DELETED`, ...).
        name: String,
        /// Its `data` (`Null` when absent).
        data: Value,
    },
    /// Anything else.
    Other(Value),
}

impl Message {
    /// Classifies a parsed message.
    pub fn classify(value: Value) -> Message {
        if value.get("QMP").is_some() {
            return Message::Greeting;
        }
        if let Some(event) = value.get("event").and_then(Value::as_str) {
            return Message::Event {
                name: event.to_owned(),
                data: value.get("data").cloned().unwrap_or(Value::Null),
            };
        }
        if let Some(ret) = value.get("return") {
            return Message::Return(ret.clone());
        }
        if let Some(error) = value.get("error") {
            let text = |key: &str| {
                error
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Message::Error {
                class: text("class"),
                desc: text("desc"),
            };
        }
        Message::Other(value)
    }
}

/// A connection to QEMU's QMP socket.
#[derive(Debug)]
pub struct Qmp {
    stream: UnixStream,
    /// Bytes read but not yet a whole line.
    pending: Vec<u8>,
    /// Events read while waiting for something else.
    events: VecDeque<(String, Value)>,
}

fn qmp_io(what: &str) -> impl FnOnce(std::io::Error) -> BenchError {
    BenchError::io(format!("QMP {what}"))
}

impl Qmp {
    /// Connects to `path` (retrying until `timeout`, as QEMU creates the
    /// socket while starting), reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => {
                    return Err(BenchError::io(format!("connect to {}", path.display()))(e));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let mut qmp = Qmp {
            stream,
            pending: Vec::new(),
            events: VecDeque::new(),
        };
        match qmp.read_message(Instant::now() + COMMAND_TIMEOUT)? {
            Some(Message::Greeting) => {}
            other => {
                return Err(BenchError::Vm(format!(
                    "QMP: expected the greeting, got {other:?}"
                )));
            }
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` (an object) and returns its `return`.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let mut line = serde_json::to_vec(&json!({ "execute": command, "arguments": arguments }))
            .map_err(|e| BenchError::Vm(format!("QMP {command}: encode: {e}")))?;
        line.push(b'\n');
        self.stream.write_all(&line).map_err(qmp_io(command))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            match self.read_message(deadline)? {
                Some(Message::Return(value)) => return Ok(value),
                Some(Message::Error { class, desc }) => {
                    return Err(BenchError::Qmp {
                        command: command.to_owned(),
                        class,
                        desc,
                    });
                }
                Some(Message::Event { name, data }) => self.events.push_back((name, data)),
                Some(Message::Greeting | Message::Other(_)) => {}
                None => {
                    return Err(BenchError::Timeout {
                        what: format!("QMP answer to {command}"),
                        after: COMMAND_TIMEOUT,
                    });
                }
            }
        }
    }

    /// Waits for event `name` whose data `matches`, for at most `timeout`
    /// (kept events first); returns its data.
    pub fn wait_event(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let kept = self
            .events
            .iter()
            .position(|(n, data)| n == name && matches(data));
        if let Some((_, data)) = kept.and_then(|i| self.events.remove(i)) {
            return Ok(data);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_message(deadline)? {
                Some(Message::Event { name: n, data }) if n == name && matches(&data) => {
                    return Ok(data);
                }
                Some(Message::Event { name: n, data }) => self.events.push_back((n, data)),
                Some(_) => {}
                None => {
                    return Err(BenchError::Timeout {
                        what: format!("QMP event {name}"),
                        after: timeout,
                    });
                }
            }
        }
    }

    /// Reads the next message; `None` once `deadline` passed.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Message>> {
        loop {
            let Some(line) = self.read_line(deadline)? else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(text.trim())
                .map_err(|e| BenchError::Vm(format!("QMP: not JSON ({e}): {text}")))?;
            return Ok(Some(Message::classify(value)));
        }
    }

    fn read_line(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.pending.drain(..=end).collect()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(qmp_io("set a read timeout"))?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(BenchError::Vm("QEMU closed the QMP connection".into())),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(qmp_io("read")(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let m = |text: &str| Message::classify(serde_json::from_str(text).unwrap());
        assert_eq!(
            m(r#"{"QMP":{"version":{},"capabilities":[]}}"#),
            Message::Greeting
        );
        assert_eq!(m(r#"{"return":{}}"#), Message::Return(json!({})));
        assert_eq!(
            m(r#"{"error":{"class":"GenericError","desc":"no"}}"#),
            Message::Error {
                class: "GenericError".into(),
                desc: "no".into()
            }
        );
        assert_eq!(
            m(r#"{"timestamp":{"seconds":1},"event":"DEVICE_DELETED","data":{"device":"lun1"}}"#),
            Message::Event {
                name: "DEVICE_DELETED".into(),
                data: json!({"device":"lun1"})
            }
        );
    }

    #[test]
    fn talks_qmp_over_a_socket_pair() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let mut read = std::io::BufReader::new(server.try_clone().unwrap());
            let mut line = String::new();
            use std::io::BufRead;
            server.write_all(b"{\"QMP\":{}}\n").unwrap();
            read.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            server.write_all(b"{\"return\":{}}\n").unwrap();
            line.clear();
            read.read_line(&mut line).unwrap();
            assert!(line.contains("device_del"), "{line}");
            // An event in the middle of an answer, split across writes.
            server
                .write_all(b"{\"event\":\"DEVICE_DELETED\",\"data\":{\"device\":\"x\"}}\n{\"ret")
                .unwrap();
            server.write_all(b"urn\":{}}\n").unwrap();
            line.clear();
            read.read_line(&mut line).unwrap();
            server
                .write_all(b"{\"error\":{\"class\":\"GenericError\",\"desc\":\"nope\"}}\n")
                .unwrap();
        });
        let mut qmp = Qmp {
            stream: client,
            pending: Vec::new(),
            events: VecDeque::new(),
        };
        assert_eq!(
            qmp.read_message(Instant::now() + COMMAND_TIMEOUT).unwrap(),
            Some(Message::Greeting)
        );
        qmp.execute("qmp_capabilities", json!({})).unwrap();
        qmp.execute("device_del", json!({"id": "x"})).unwrap();
        let data = qmp
            .wait_event(
                "DEVICE_DELETED",
                |d| d["device"] == "x",
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(data["device"], "x");
        let err = qmp.execute("object-del", json!({"id": "y"})).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        peer.join().unwrap();
        assert!(
            qmp.wait_event("DEVICE_DELETED", |_| true, Duration::from_millis(20))
                .is_err()
        );
    }
}
