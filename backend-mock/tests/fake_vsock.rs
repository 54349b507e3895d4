//! Simulated vsock: host listeners dialled by the guest, guest echo
//! listeners the host connects to.
#![cfg(test)]

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_api::{Error, Resource, State, StopMode, Uvm, VMADDR_PORT_ANY, VsockListener};

fn io_kind<T>(result: uvm_api::Result<T>) -> ErrorKind {
    match result {
        Err(Error::Io { source, .. }) => source.kind(),
        Err(e) => panic!("expected Io, got {e:?}"),
        Ok(_) => panic!("expected Io, got Ok"),
    }
}

/// Serves every connection of `listener`: reads to the end, replies with the bytes reversed.
fn serve_reversed(mut listener: Box<dyn VsockListener>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut served = 0;
        while let Ok(mut stream) = listener.accept().await {
            served += 1;
            tokio::spawn(async move {
                let mut data = Vec::new();
                stream.read_to_end(&mut data).await.unwrap();
                data.reverse();
                stream.write_all(&data).await.unwrap();
                stream.shutdown().await.unwrap();
            });
        }
        served
    })
}

#[tokio::test]
async fn the_guest_dials_a_host_listener() {
    let vm = running("dial").await;
    let listener = vm.vm_socket().unwrap().listen(1024).await.unwrap();
    assert_eq!(listener.port(), 1024);
    let server = serve_reversed(listener);
    let reply = vm
        .guest_probe()
        .unwrap()
        .dial_host(1024, b"hello host")
        .await
        .unwrap();
    assert_eq!(reply, b"tsoh olleh");
    vm.stop(StopMode::Force).await.unwrap();
    // The accept loop ends with the VM.
    assert_eq!(
        tokio::time::timeout(LONG, server).await.unwrap().unwrap(),
        1
    );
}

#[tokio::test]
async fn dialling_a_port_nobody_listens_on_is_refused() {
    let vm = running("refused").await;
    assert_eq!(
        io_kind(vm.guest_probe().unwrap().dial_host(77, b"x").await),
        ErrorKind::ConnectionRefused
    );
}

#[tokio::test]
async fn ports_are_exclusive_until_the_listener_is_dropped() {
    let vm = running("ports").await;
    let vsock = vm.vm_socket().unwrap();
    let listener = vsock.listen(5).await.unwrap();
    match vsock.listen(5).await {
        Err(Error::AlreadyExists { resource, id }) => {
            assert_eq!((resource, id.as_str()), (Resource::VmSocket, "5"));
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("listened twice on port 5"),
    }
    drop(listener);
    assert_eq!(
        io_kind(vm.guest_probe().unwrap().dial_host(5, b"x").await),
        ErrorKind::ConnectionRefused
    );
    let listener = vsock.listen(5).await.unwrap();
    let server = serve_reversed(listener);
    assert_eq!(
        vm.guest_probe().unwrap().dial_host(5, b"ab").await.unwrap(),
        b"ba"
    );
    server.abort();
}

#[tokio::test]
async fn the_any_port_is_refused() {
    let vm = running("any").await;
    assert_kind(
        vm.vm_socket()
            .unwrap()
            .listen(VMADDR_PORT_ANY)
            .await
            .map(|_| ()),
        "invalid_argument",
    );
    assert_kind(
        vm.vm_socket()
            .unwrap()
            .connect(VMADDR_PORT_ANY)
            .await
            .map(|_| ()),
        "invalid_argument",
    );
}

#[tokio::test]
async fn the_host_connects_to_a_guest_echo() {
    let vm = running("echo").await;
    let vsock = vm.vm_socket().unwrap();
    assert_eq!(
        io_kind(vsock.connect(9).await),
        ErrorKind::ConnectionRefused
    );
    let probe = vm.guest_probe().unwrap();
    probe.serve_echo(9).await.unwrap();
    assert_kind(probe.serve_echo(9).await, "already_exists");
    let mut stream = vsock.connect(9).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    stream.write_all(b" pong").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b" pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_both_ways() {
    let vm = running("many").await;
    let server = serve_reversed(vm.vm_socket().unwrap().listen(100).await.unwrap());
    vm.guest_probe().unwrap().serve_echo(200).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let vm = vm.clone();
        tasks.push(tokio::spawn(async move {
            let payload = format!("message {i}").into_bytes();
            let reply = vm
                .guest_probe()
                .unwrap()
                .dial_host(100, &payload)
                .await
                .unwrap();
            let mut expected = payload.clone();
            expected.reverse();
            assert_eq!(reply, expected);

            let mut stream = vm.vm_socket().unwrap().connect(200).await.unwrap();
            stream.write_all(&payload).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut echoed = Vec::new();
            stream.read_to_end(&mut echoed).await.unwrap();
            assert_eq!(echoed, payload);
        }));
    }
    for t in tasks {
        tokio::time::timeout(LONG, t).await.unwrap().unwrap();
    }
    vm.stop(StopMode::Force).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, server).await.unwrap().unwrap(),
        64
    );
    let stats = vm.stats().await.unwrap();
    assert_eq!(stats.counters.get("vsock_connections"), Some(&128));
}

#[tokio::test]
async fn a_large_payload_crosses_both_ways() {
    let vm = running("big").await;
    let server = serve_reversed(vm.vm_socket().unwrap().listen(1).await.unwrap());
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let reply = vm
        .guest_probe()
        .unwrap()
        .dial_host(1, &payload)
        .await
        .unwrap();
    let mut expected = payload;
    expected.reverse();
    assert_eq!(reply, expected);
    server.abort();
}

#[tokio::test]
async fn listening_before_start_and_while_paused_works() {
    let vm = created("early").await;
    let server = serve_reversed(vm.vm_socket().unwrap().listen(3).await.unwrap());
    vm.start().await.unwrap();
    vm.pause().await.unwrap();
    let later = vm.vm_socket().unwrap().listen(4).await.unwrap();
    // A paused guest dials nothing; connect is refused by state.
    assert_invalid_state(
        vm.guest_probe().unwrap().dial_host(3, b"x").await,
        State::Paused,
    );
    assert_invalid_state(
        vm.vm_socket().unwrap().connect(3).await.map(|_| ()),
        State::Paused,
    );
    vm.resume().await.unwrap();
    assert_eq!(
        vm.guest_probe().unwrap().dial_host(3, b"xy").await.unwrap(),
        b"yx"
    );
    drop(later);
    server.abort();
}

#[tokio::test]
async fn accept_fails_once_the_vm_stops() {
    let vm = running("acc").await;
    let mut listener = vm.vm_socket().unwrap().listen(8).await.unwrap();
    let waiting = tokio::spawn(async move {
        let r = listener.accept().await.map(|_| ());
        (r, listener)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished());
    vm.faults().guest_exit(uvm_api::StopReason::Crash);
    let (result, mut listener) = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_invalid_state(result, State::Stopped);
    assert_invalid_state(listener.accept().await.map(|_| ()), State::Stopped);
    assert_invalid_state(
        vm.vm_socket().unwrap().listen(9).await.map(|_| ()),
        State::Stopped,
    );
}

#[tokio::test]
async fn an_echo_connection_ends_when_the_vm_stops() {
    let vm = running("end").await;
    vm.guest_probe().unwrap().serve_echo(12).await.unwrap();
    let mut stream = vm.vm_socket().unwrap().connect(12).await.unwrap();
    vm.stop(StopMode::Force).await.unwrap();
    let mut buf = Vec::new();
    // The guest side is gone: end of stream (or an error), never a hang.
    let read = tokio::time::timeout(LONG, stream.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(read.is_err() || buf.is_empty());
}
