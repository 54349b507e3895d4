//! Host/guest sockets: guest-dialled connections reach host listeners, host
//! connections reach guest listeners, and ports follow their rules.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uvm_api::{
    Operation, Resource, State, StopMode, Uvm, VMADDR_PORT_ANY, VmSocketManager, VsockListener,
};

use super::support::{
    Before, Claim, claim, create, created_and_running, in_state, probe, reach, refused,
};
use crate::capability::Capability;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::step::{Must, Parts, Step, Want, ensure, expect_err, fail, unclaimed};

const R: Resource = Resource::VmSocket;
const IO_LIMIT: Duration = Duration::from_secs(10);

/// The VM's socket manager if it claims sockets; if it does not, checks that
/// listen and connect are refused in its current state and ends the check
/// unclaimed.
async fn sockets(vm: &dyn Uvm, port: u32) -> Step<&dyn VmSocketManager> {
    match claim(vm, R, Operation::Add, vm.vm_socket())? {
        Claim::Yes(m) => Ok(m),
        Claim::No(m) => {
            let before = Before::take(vm).await?;
            let listen = match m {
                Some(m) => Some(m.listen(port).await.map(|_| ())),
                None => None,
            };
            refused(
                vm,
                &before,
                &format!("listen({port})"),
                R,
                Operation::Add,
                listen,
            )
            .await?;
            let connect = match m {
                Some(m) => Some(m.connect(port).await.map(|_| ())),
                None => None,
            };
            refused(
                vm,
                &before,
                &format!("connect({port})"),
                R,
                Operation::Add,
                connect,
            )
            .await?;
            Err(unclaimed(&[Capability::Pair(R, Operation::Add)]))
        }
    }
}

/// What the host answers to a guest's payload.
fn answer(payload: &[u8]) -> Vec<u8> {
    let mut out = b"host:".to_vec();
    out.extend(payload.iter().rev());
    out
}

/// Accepts one connection, reads it to the end, answers, closes.
async fn serve_once(mut listener: Box<dyn VsockListener>) -> Step {
    let mut stream = listener
        .accept()
        .await
        .must("accepting the guest's connection")?;
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .await
        .map_err(|e| fail(format!("reading the guest's payload on the host: {e}")))?;
    stream
        .write_all(&answer(&got))
        .await
        .map_err(|e| fail(format!("answering the guest: {e}")))?;
    stream
        .shutdown()
        .await
        .map_err(|e| fail(format!("closing the host side: {e}")))
}

/// The guest dials `port`, on which `listener` listens; the answer must come back.
async fn guest_dials(
    vm: &dyn Uvm,
    listener: Box<dyn VsockListener>,
    port: u32,
    payload: &[u8],
) -> Step {
    let p = probe(vm)?;
    // The I/O limit starts once the guest is up: a nested guest may take
    // longer than that to boot.
    p.uptime().await.must("the guest agent answering")?;
    let server = tokio::spawn(serve_once(listener));
    let reply = tokio::time::timeout(IO_LIMIT, p.dial_host(port, payload))
        .await
        .map_err(|_| {
            fail(format!(
                "the guest's dial to host port {port} did not finish within {IO_LIMIT:?}"
            ))
        })?
        .must(&format!("the guest dialling host port {port}"))?;
    tokio::time::timeout(IO_LIMIT, server)
        .await
        .map_err(|_| fail("the host listener never accepted the guest's connection"))?
        .map_err(|e| fail(format!("host server task: {e}")))??;
    ensure!(
        reply == answer(payload),
        "the guest sent {} bytes to host port {port} and got back {:?}; expected the host's answer {:?}",
        payload.len(),
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(&answer(payload))
    );
    Ok(())
}

async fn guest_dial(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6000).await?;
    let listener = m.listen(6000).await.must("listen(6000) while running")?;
    guest_dials(&*vm, listener, 6000, b"hello from the guest").await
}

async fn host_connect(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6001).await?;
    let p = probe(&*vm)?;
    p.serve_echo(6001)
        .await
        .must("starting a guest echo server on 6001")?;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let exchange = async {
        let mut stream = m
            .connect(6001)
            .await
            .must("connect(6001) to the guest's echo server")?;
        stream
            .write_all(&payload)
            .await
            .map_err(|e| fail(format!("sending to the guest: {e}")))?;
        stream
            .shutdown()
            .await
            .map_err(|e| fail(format!("half-closing: {e}")))?;
        let mut back = Vec::new();
        stream
            .read_to_end(&mut back)
            .await
            .map_err(|e| fail(format!("reading the echo: {e}")))?;
        Ok::<_, Outcome>(back)
    };
    let back = tokio::time::timeout(IO_LIMIT, exchange)
        .await
        .map_err(|_| {
            fail(format!(
                "the exchange with the guest's echo server did not finish within {IO_LIMIT:?}"
            ))
        })??;
    ensure!(
        back == payload,
        "the guest echoed {} bytes of {} sent, or other bytes",
        back.len(),
        payload.len()
    );
    Ok(())
}

async fn listen_in_state(ctx: &Ctx, state: State, port: u32) -> Step {
    let vm = create(ctx).await?;
    reach(&*vm, state).await?;
    let m = sockets(&*vm, port).await?;
    let listener = m
        .listen(port)
        .await
        .must(&format!("listen({port}) while {state}"))?;
    ensure!(
        listener.port() == port,
        "listen({port}) returned a listener on port {}",
        listener.port()
    );
    match state {
        State::Created => vm.start().await.must("start")?,
        State::Paused if vm.supports_action(uvm_api::Action::Resume) => {
            vm.resume().await.must("resume")?
        }
        _ => {}
    }
    if vm.state() == State::Running {
        guest_dials(
            &*vm,
            listener,
            port,
            format!("dial after a listen while {state}").as_bytes(),
        )
        .await?;
    }
    Ok(())
}

async fn listen_before_start(ctx: Ctx) -> Step {
    listen_in_state(&ctx, State::Created, 6002).await
}

async fn listen_while_paused(ctx: Ctx) -> Step {
    listen_in_state(&ctx, State::Paused, 6003).await
}

async fn listen_after_stop(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Stopped).await?;
    let m = sockets(&*vm, 6004).await?;
    expect_err(
        "listen(6004) on a stopped VM",
        m.listen(6004).await,
        Want::InvalidState(State::Stopped),
    )?;
    Ok(())
}

async fn connect_outside_running(ctx: Ctx) -> Step {
    let mut parts = Parts::default();
    for state in [State::Created, State::Paused, State::Stopped] {
        let vm = match in_state(&ctx, state).await {
            Ok(vm) => vm,
            Err(Outcome::Skipped(_)) => continue,
            Err(o) => return Err(o),
        };
        parts.part(connect_refused_in(&*vm, state).await)?;
    }
    parts.end()
}

async fn connect_refused_in(vm: &dyn Uvm, state: State) -> Step {
    let m = sockets(vm, 6005).await?;
    expect_err(
        &format!("connect(6005) while {state}"),
        m.connect(6005).await,
        Want::InvalidState(state),
    )?;
    Ok(())
}

async fn connect_refused(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6006).await?;
    expect_err(
        "connect(6006) with no guest listener on it",
        m.connect(6006).await,
        Want::Io,
    )?;
    Ok(())
}

async fn port_twice(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6007).await?;
    let listener = m.listen(6007).await.must("listen(6007)")?;
    expect_err(
        "a second listen(6007) while the first listener lives",
        m.listen(6007).await,
        Want::AlreadyExists(R),
    )?;
    guest_dials(&*vm, listener, 6007, b"the first listener still works").await
}

async fn drop_frees_port(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6008).await?;
    for round in 1..=3 {
        let listener = m
            .listen(6008)
            .await
            .must(&format!("listen(6008), round {round}"))?;
        drop(listener);
    }
    let listener = m
        .listen(6008)
        .await
        .must("listen(6008) after three dropped listeners")?;
    guest_dials(&*vm, listener, 6008, b"after re-listening").await
}

async fn accept_fails_after_stop(ctx: Ctx) -> Step {
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6009).await?;
    let mut pending = m.listen(6009).await.must("listen(6009)")?;
    let mut later = m.listen(6010).await.must("listen(6010)")?;
    let waiting = tokio::spawn(async move { pending.accept().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    vm.stop(StopMode::Force).await.must("force stop")?;
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .map_err(|_| fail("an accept pending when the VM stopped never returned; it must fail with InvalidState"))?
        .map_err(|e| fail(format!("accept task: {e}")))?;
    expect_err(
        "an accept pending when the VM stopped",
        woken,
        Want::InvalidState(State::Stopped),
    )?;
    let after = tokio::time::timeout(Duration::from_secs(5), later.accept())
        .await
        .map_err(|_| {
            fail("accept on a stopped VM's listener blocked; it must fail with InvalidState")
        })?;
    expect_err(
        "accept after the VM stopped",
        after.map(|_| ()),
        Want::InvalidState(State::Stopped),
    )?;
    Ok(())
}

async fn concurrent_connections(ctx: Ctx) -> Step {
    const N: usize = 8;
    let vm = in_state(&ctx, State::Running).await?;
    let m = sockets(&*vm, 6011).await?;
    let mut listener = m.listen(6011).await.must("listen(6011)")?;
    let p = probe(&*vm)?;
    let server = tokio::spawn(async move {
        let mut handlers = Vec::new();
        for _ in 0..N {
            let mut stream = listener
                .accept()
                .await
                .must("accepting one of several connections")?;
            handlers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                stream
                    .read_to_end(&mut got)
                    .await
                    .map_err(|e| fail(format!("host read: {e}")))?;
                stream
                    .write_all(&answer(&got))
                    .await
                    .map_err(|e| fail(format!("host write: {e}")))?;
                stream
                    .shutdown()
                    .await
                    .map_err(|e| fail(format!("host close: {e}")))
            }));
        }
        for h in handlers {
            h.await.map_err(|e| fail(format!("handler task: {e}")))??;
        }
        Ok::<(), Outcome>(())
    });
    let dials = (0..N).map(|i| {
        let payload = format!("connection {i}").into_bytes();
        async move {
            let reply = p
                .dial_host(6011, &payload)
                .await
                .must(&format!("guest dial {i}"))?;
            ensure!(
                reply == answer(&payload),
                "connection {i} got the answer meant for another: {:?}",
                String::from_utf8_lossy(&reply)
            );
            Ok::<(), Outcome>(())
        }
    });
    p.uptime().await.must("the guest agent answering")?;
    let results = tokio::time::timeout(IO_LIMIT, futures::future::join_all(dials))
        .await
        .map_err(|_| {
            fail(format!(
                "{N} concurrent guest dials did not finish within {IO_LIMIT:?}"
            ))
        })?;
    for r in results {
        r?;
    }
    tokio::time::timeout(IO_LIMIT, server)
        .await
        .map_err(|_| fail("the host did not accept every connection"))?
        .map_err(|e| fail(format!("server task: {e}")))??;
    Ok(())
}

async fn port_any(ctx: Ctx) -> Step {
    created_and_running(|state| port_any_in(&ctx, state)).await
}

async fn port_any_in(ctx: &Ctx, state: State) -> Step {
    let vm = in_state(ctx, state).await?;
    let m = sockets(&*vm, VMADDR_PORT_ANY).await?;
    expect_err(
        &format!("listen(VMADDR_PORT_ANY) while {state}"),
        m.listen(VMADDR_PORT_ANY).await,
        Want::InvalidArgument,
    )?;
    if state == State::Running {
        expect_err(
            "connect(VMADDR_PORT_ANY)",
            m.connect(VMADDR_PORT_ANY).await,
            Want::InvalidArgument,
        )?;
    }
    Ok(())
}

async fn ports_above_16_bits(ctx: Ctx) -> Step {
    let vm = create(&ctx).await?;
    let low = 6100;
    let high = low + (1 << 16);
    let m = sockets(&*vm, high).await?;
    let first = m.listen(low).await.must(&format!("listen({low})"))?;
    let second = m
        .listen(high)
        .await
        .must(&format!("listen({high}) while listening on {low}"))?;
    for (listener, port) in [(&first, low), (&second, high)] {
        ensure!(
            listener.port() == port,
            "listen({port}) gave a listener on port {}",
            listener.port()
        );
    }
    expect_err(
        &format!("a second listen({high})"),
        m.listen(high).await,
        Want::AlreadyExists(R),
    )?;
    Ok(())
}

super::check!(
    Vsock,
    vsock_guest_dial_reaches_host_listener,
    "a guest-dialled connection reaches the host listener and the host's answer reaches the guest",
    guest_dial
);

super::check!(
    Vsock,
    vsock_host_connect_reaches_guest_listener,
    "a host connection reaches a guest listener; 100 kB echo back intact",
    host_connect
);

super::check!(
    Vsock,
    vsock_listen_before_start,
    "a listener opened before start receives the guest's connections after boot",
    listen_before_start
);

super::check!(
    Vsock,
    vsock_listen_while_paused,
    "listen works while paused, and the listener serves after resume",
    listen_while_paused
);

super::check!(
    Vsock,
    vsock_listen_after_stop_invalid_state,
    "listen on a stopped VM gives InvalidState",
    listen_after_stop
);

super::check!(
    Vsock,
    vsock_connect_outside_running_invalid_state,
    "connect before start, while paused or after stop gives InvalidState",
    connect_outside_running
);

super::check!(
    Vsock,
    vsock_connect_without_listener_io_error,
    "connect to a guest port nobody listens on gives Io (connection refused)",
    connect_refused
);

super::check!(
    Vsock,
    vsock_port_twice_already_exists,
    "a second listener on a port gives AlreadyExists; the first keeps working",
    port_twice
);

super::check!(
    Vsock,
    vsock_dropped_listener_frees_port,
    "dropping a listener frees its port for a new listener",
    drop_frees_port
);

super::check!(
    Vsock,
    vsock_accept_fails_after_stop,
    "a pending accept, and any accept after stop, fails with InvalidState once the VM stops",
    accept_fails_after_stop
);

super::check!(
    Vsock,
    vsock_concurrent_guest_connections,
    "eight concurrent guest connections are all accepted, each answered on its own stream",
    concurrent_connections
);

super::check!(
    Vsock,
    vsock_port_any_invalid_argument,
    "VMADDR_PORT_ANY is refused with InvalidArgument by listen and connect",
    port_any
);

super::check!(
    Vsock,
    vsock_ports_above_16_bits_are_distinct,
    "ports are 32-bit: listeners on a port and on that port plus 65536 are distinct, each on the port asked for",
    ports_above_16_bits
);
