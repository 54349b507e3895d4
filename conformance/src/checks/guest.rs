//! The guest's whole view of its devices, to tell whether a call changed it.

use std::fmt;

use uvm_api::{GuestBlockDevice, GuestNic, GuestPmem, GuestProbe, GuestShare};

use crate::step::{Step, fail};

/// Everything the guest sees, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestSnapshot {
    pub(crate) block: Vec<GuestBlockDevice>,
    pub(crate) pmem: Vec<GuestPmem>,
    pub(crate) nics: Vec<GuestNic>,
    pub(crate) shares: Vec<GuestShare>,
}

/// Asks the probe for every device list.
pub(crate) async fn snapshot(probe: &dyn GuestProbe) -> Step<GuestSnapshot> {
    let probe_err = |what: &str, e: uvm_api::Error| {
        fail(format!(
            "guest probe {what}: expected success while running, got {}",
            crate::step::describe(&e)
        ))
    };
    let mut block = probe
        .block_devices()
        .await
        .map_err(|e| probe_err("block_devices", e))?;
    let mut pmem = probe
        .pmem_devices()
        .await
        .map_err(|e| probe_err("pmem_devices", e))?;
    let mut nics = probe
        .network_interfaces()
        .await
        .map_err(|e| probe_err("network_interfaces", e))?;
    let mut shares = probe.shares().await.map_err(|e| probe_err("shares", e))?;
    block.sort_by(|a, b| a.name.cmp(&b.name));
    pmem.sort_by(|a, b| a.name.cmp(&b.name));
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    shares.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(GuestSnapshot {
        block,
        pmem,
        nics,
        shares,
    })
}

impl fmt::Display for GuestSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let block: Vec<String> = self
            .block
            .iter()
            .map(|d| {
                let addr = d
                    .scsi_address
                    .map(|(c, l)| format!(" at {c}:{l}"))
                    .unwrap_or_default();
                let ro = if d.read_only { " ro" } else { "" };
                format!("{}{addr} {}B{ro}", d.name, d.size_bytes)
            })
            .collect();
        let pmem: Vec<String> = self
            .pmem
            .iter()
            .map(|p| format!("{} {}B", p.name, p.size_bytes))
            .collect();
        let nics: Vec<String> = self
            .nics
            .iter()
            .map(|n| format!("{} {}", n.name, n.mac))
            .collect();
        let shares: Vec<String> = self
            .shares
            .iter()
            .map(|s| format!("{}{}", s.tag, if s.read_only { " ro" } else { "" }))
            .collect();
        write!(
            f,
            "block [{}], pmem [{}], nics [{}], shares [{}]",
            block.join(", "),
            pmem.join(", "),
            nics.join(", "),
            shares.join(", ")
        )
    }
}
