//! `uvm-agent`: the guest agent binary (started by the guest image's `/init`).
//!
//! Usage: `uvm-agent [--port N] [--root DIR] [--stdio]`. Listens on vsock
//! port N (default 1024) and serves each connection on its own thread;
//! with `--stdio` it serves one session on stdin/stdout instead.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use uvm_guest_agent::server::{VsockListener, serve};
use uvm_guest_agent::system::RealSystem;
use uvm_guest_agent::{Agent, DEFAULT_PORT, PROTOCOL_VERSION};

struct Args {
    port: u32,
    root: PathBuf,
    stdio: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: DEFAULT_PORT,
        root: PathBuf::from("/"),
        stdio: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let value = it.next().ok_or("--port needs a number")?;
                args.port = value.parse().map_err(|e| format!("--port {value}: {e}"))?;
            }
            "--root" => args.root = it.next().ok_or("--root needs a path")?.into(),
            "--stdio" => args.stdio = true,
            "-h" | "--help" => {
                return Err("usage: uvm-agent [--port N] [--root DIR] [--stdio]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Binds the vsock port, retrying every second (the transport module or
/// device may not be there yet) and saying so once.
fn bind_with_retry(port: u32) -> VsockListener {
    let mut reported = false;
    loop {
        match VsockListener::bind(port) {
            Ok(listener) => return listener,
            Err(e) => {
                if !reported {
                    eprintln!(
                        "uvm-agent: cannot listen on vsock port {port} yet: {e}; retrying every second"
                    );
                    reported = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("uvm-agent: {message}");
            return ExitCode::from(2);
        }
    };
    let agent = Agent::new(args.root, Arc::new(RealSystem));
    if args.stdio {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        return match serve(&agent, stdin.lock(), stdout.lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("uvm-agent: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let listener = bind_with_retry(args.port);
    eprintln!(
        "uvm-agent: listening on vsock port {} (protocol v{PROTOCOL_VERSION})",
        args.port
    );
    loop {
        match listener.accept() {
            Ok((stream, cid)) => {
                let agent = agent.clone();
                std::thread::spawn(move || {
                    let reader = match stream.try_clone() {
                        Ok(reader) => BufReader::new(reader),
                        Err(e) => {
                            eprintln!("uvm-agent: connection from CID {cid}: {e}");
                            return;
                        }
                    };
                    if let Err(e) = serve(&agent, reader, BufWriter::new(stream)) {
                        eprintln!("uvm-agent: connection from CID {cid}: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("uvm-agent: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
