//! What a lab tool prints when a guest did not do what it waited for:
//! whether the agent still answers, whether the vCPUs still run (exit
//! counters a second apart), and the guest's own view of its PCI bus and
//! interrupts. It tells a lost hot-plug notification from a stalled vsock
//! path from a guest that stopped running.

use std::time::{Duration, Instant};

use uvm_api::Uvm;
use uvm_backend_kvm::KvmUvm;
use uvm_guest_agent::client::AgentClient;
use uvm_guest_agent::protocol::{DataReply, DirReply, Op};

use crate::threads;

/// How long each question to the agent may take here.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Guest directories whose entries are printed: the devices on the PCI
/// bus, and the hot-plug slots the guest's ACPI PCI driver knows.
const GUEST_DIRS: [&str; 2] = ["/sys/bus/pci/devices", "/sys/bus/pci/slots"];

/// Guest files whose contents are printed: MSI vectors per virtio queue,
/// and the ACPI interrupt that carries hot-plug events.
const GUEST_FILES: [&str; 1] = ["/proc/interrupts"];

/// Prints the diagnosis of `vm`, every line prefixed with `tool: `.
pub async fn print(tool: &str, vm: &KvmUvm) {
    let say = |line: &str| println!("{tool}: diagnosis: {line}");
    print_threads(&say).await;
    print_exit_rate(vm, &say).await;
    print_pause(vm, &say).await;
    let agent = AgentClient::over_vsock(vm.vsock().clone(), uvm_guest_agent::DEFAULT_PORT)
        .with_timeout(ASK_TIMEOUT);
    let asked = Instant::now();
    match agent.ping().await {
        Ok(_) => say(&format!(
            "the agent answers a ping in {:.1?}",
            asked.elapsed()
        )),
        Err(e) => {
            say(&format!(
                "the agent does not answer a ping ({e}, after {:.1?}); guest files not read",
                asked.elapsed()
            ));
            return;
        }
    }
    for path in GUEST_DIRS {
        print_guest_dir(&agent, path, &say).await;
    }
    for path in GUEST_FILES {
        print_guest_file(&agent, path, &say).await;
    }
}

/// Every thread of this process, sampled twice a second apart: its name,
/// scheduler state, the kernel function it sleeps in, its system call (16
/// is `ioctl`, as in `KVM_RUN`, 202 is `futex`, a lock or a condition
/// variable, "running" while on a CPU), and the CPU time it took in that
/// second. A vCPU thread with guest time runs its guest; one with user
/// time only spins in the VMM.
async fn print_threads(say: &impl Fn(&str)) {
    let before = threads::of_this_process();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for now in threads::of_this_process() {
        let grew = now.ticks_since(&before);
        say(&format!(
            "thread {} {:<16} state {} wchan {} syscall {} | ticks in 1 s: user {} system {} guest {}",
            now.tid,
            now.name,
            now.state,
            now.wchan,
            now.syscall,
            grew.user,
            grew.system,
            grew.guest,
        ));
    }
}

/// How many times the vCPUs are paused to see where they stand.
const PAUSES: u32 = 4;

/// Whether the vCPUs stop for a pause within 5 s (a vCPU thread that
/// spins in the VMM never does) and where each stood then, a few times
/// 100 ms apart (one address again and again is a guest spinning in one
/// place); resumes them each time.
async fn print_pause(vm: &KvmUvm, say: &impl Fn(&str)) {
    for _ in 0..PAUSES {
        let asked = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), vm.pause()).await {
            Ok(Ok(())) => {
                say(&format!("the VM paused in {:.1?}", asked.elapsed()));
                for (index, registers) in vm.parked_at().await {
                    say(&format!("  vCPU {index}: {registers}"));
                }
                if let Err(e) = vm.resume().await {
                    say(&format!("resume failed: {e}"));
                    return;
                }
            }
            Ok(Err(e)) => {
                say(&format!("pause failed: {e}"));
                return;
            }
            Err(_) => {
                say("pause did not complete within 5 s");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The VM's counters twice, a second apart: exits that grow mean the
/// vCPUs run.
async fn print_exit_rate(vm: &KvmUvm, say: &impl Fn(&str)) {
    let Ok(first) = vm.stats().await else {
        say("stats() failed");
        return;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Ok(second) = vm.stats().await else {
        say("stats() failed the second time");
        return;
    };
    for (name, value) in &second.counters {
        let before = first.counters.get(name).copied().unwrap_or(0);
        say(&format!(
            "counter {name} = {value} (+{} in 1 s)",
            value.saturating_sub(before)
        ));
    }
}

async fn print_guest_dir(agent: &AgentClient, path: &str, say: &impl Fn(&str)) {
    let listed: uvm_api::Result<DirReply> = agent.call(Op::ListDir { path: path.into() }).await;
    match listed {
        Ok(dir) => {
            let names: Vec<&str> = dir.entries.iter().map(|e| e.name.as_str()).collect();
            say(&format!("{path}: {}", names.join(" ")));
        }
        Err(e) => say(&format!("{path}: {e}")),
    }
}

async fn print_guest_file(agent: &AgentClient, path: &str, say: &impl Fn(&str)) {
    let read: uvm_api::Result<DataReply> = agent
        .call(Op::ReadFile {
            path: path.into(),
            offset: 0,
            len: Some(16 << 10),
        })
        .await;
    let text = match read {
        Ok(reply) => match uvm_guest_agent::hex::decode(&reply.data) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(not hex: {e})"),
        },
        Err(e) => format!("({e})"),
    };
    say(&format!("{path}:"));
    for line in text.lines() {
        say(&format!("  {line}"));
    }
}
