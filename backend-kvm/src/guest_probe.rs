//! [`KvmGuestProbe`]: the kvm backend's [`GuestProbe`], the guest agent
//! (`uvm-guest-agent`, vsock port [`uvm_guest_agent::DEFAULT_PORT`]) spoken
//! to over the VM's own vsock manager.
//!
//! Everything goes to the agent except `trigger(Crash)`: a triple fault
//! cannot be caused from the guest's user space, so the VMM causes one:
//! it empties vCPU 0's IDT and injects an exception
//! ([`crate::vcpu::inject_triple_fault`]); the CPU shuts down and the VM
//! ends with `Crash` through the same `KVM_EXIT_SHUTDOWN` path a guest
//! triple fault takes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use uvm_api::{
    Error, GuestAction, GuestBlockDevice, GuestNic, GuestPmem, GuestProbe, GuestShare, Result,
    State,
};
use uvm_guest_agent::client::AgentClient;

use crate::control::protocol::{Command, VmmHandle};
use crate::managers::vsock::KvmVsock;

/// The guest view of one VM of the kvm backend.
pub struct KvmGuestProbe {
    agent: AgentClient,
    vmm: Arc<Mutex<Option<VmmHandle>>>,
}

impl KvmGuestProbe {
    /// A probe talking to the agent through `vsock`; `vmm` is the VM's
    /// control handle once started (for the injected crash).
    pub fn new(vsock: Arc<KvmVsock>, vmm: Arc<Mutex<Option<VmmHandle>>>) -> Self {
        KvmGuestProbe {
            agent: AgentClient::over_vsock(vsock, uvm_guest_agent::DEFAULT_PORT),
            vmm,
        }
    }

    /// The agent client (for agent operations the probe trait lacks).
    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    async fn crash(&self) -> Result<()> {
        let not_running = || Error::InvalidState {
            operation: "trigger crash".into(),
            state: State::Stopped,
        };
        let vmm = self.vmm.lock().clone().ok_or_else(|| Error::InvalidState {
            operation: "trigger crash".into(),
            state: State::Created,
        })?;
        let (tx, rx) = oneshot::channel();
        vmm.send(Command::InjectCrash(tx))
            .map_err(|_| not_running())?;
        match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(true)) => Ok(()),
            Ok(_) => Err(not_running()),
            Err(_) => Err(Error::Timeout {
                operation: "injecting a triple fault".into(),
                after: Duration::from_secs(5),
            }),
        }
    }
}

#[async_trait]
impl GuestProbe for KvmGuestProbe {
    async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>> {
        self.agent.block_devices().await
    }

    async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.agent.read_block(name, offset, len).await
    }

    async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.agent.write_block(name, offset, data).await
    }

    async fn network_interfaces(&self) -> Result<Vec<GuestNic>> {
        self.agent.network_interfaces().await
    }

    async fn pmem_devices(&self) -> Result<Vec<GuestPmem>> {
        self.agent.pmem_devices().await
    }

    async fn shares(&self) -> Result<Vec<GuestShare>> {
        self.agent.shares().await
    }

    async fn list_share(&self, tag: &str) -> Result<Vec<String>> {
        self.agent.list_share(tag).await
    }

    async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>> {
        self.agent.read_share_file(tag, path).await
    }

    async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()> {
        self.agent.write_share_file(tag, path, data).await
    }

    async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        self.agent.dial_host(port, payload).await
    }

    async fn serve_echo(&self, port: u32) -> Result<()> {
        self.agent.serve_echo(port).await
    }

    async fn uptime(&self) -> Result<Duration> {
        self.agent.uptime().await
    }

    async fn trigger(&self, action: GuestAction) -> Result<()> {
        match action {
            GuestAction::Crash => self.crash().await,
            other => self.agent.trigger(other).await,
        }
    }
}
