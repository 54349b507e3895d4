//! One boot measurement, and the table of runs with medians.

use std::fmt::Write as _;
use std::time::Duration;

use crate::smaps::Footprint;
use crate::stats::median;

/// Which VMM a sample is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Vmm {
    /// backend-kvm, in this process.
    Kvm,
    /// backend-kvm as another (older) build of boot-bench boots it
    /// (`--kvm-baseline`), to compare builds in the same run.
    KvmBaseline,
    /// `qemu-system-x86_64 -M microvm -accel kvm`, a child process.
    Qemu,
}

impl std::fmt::Display for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Vmm::Kvm => "backend-kvm",
            Vmm::KvmBaseline => "kvm-baseline",
            Vmm::Qemu => "qemu-microvm",
        })
    }
}

/// One boot of one VMM.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// The VMM.
    pub vmm: Vmm,
    /// Run number, from 1.
    pub run: usize,
    /// From `start()` (kvm) or spawning QEMU to `UVM_GUEST_READY` on the console.
    pub console_ready: Option<Duration>,
    /// From the same instant to the agent's first answer over vsock; `None`
    /// when it could not be measured (see `note`).
    pub agent_answer: Option<Duration>,
    /// The VMM's resident memory while the guest was up.
    pub footprint: Option<Footprint>,
    /// `Rss:` of the anonymous mapping smaps-parsing took as guest RAM, KiB.
    /// For backend-kvm the footprint's guest figure is the VMM's own
    /// `mincore` count instead (exact: smaps may merge the guest mapping
    /// with an anonymous neighbour); this is the cross-check.
    pub smaps_guest_rss_kib: Option<u64>,
    /// VM exits to user space from `start()` to the agent's first answer
    /// (`exits.total` of backend-kvm's `Stats` counters); `None` for QEMU,
    /// which does not count them.
    #[serde(default)]
    pub exits: Option<u64>,
    /// How long the guest kernel took to unpack its initramfs, from its
    /// console log ([`crate::kernel_log`]).
    #[serde(default)]
    pub unpack: Option<Duration>,
    /// Anything worth saying about the run.
    pub note: Option<String>,
}

/// The line prefix a `--kvm-child` process prints its sample after (as JSON).
pub const SAMPLE_PREFIX: &str = "BOOT_BENCH_SAMPLE ";

impl Sample {
    /// The sample as one [`SAMPLE_PREFIX`] line.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        format!("{SAMPLE_PREFIX}{json}")
    }

    /// Finds a [`SAMPLE_PREFIX`] line in `output` and parses it.
    pub fn from_output(output: &str) -> Option<Sample> {
        output
            .lines()
            .find_map(|l| l.strip_prefix(SAMPLE_PREFIX))
            .and_then(|json| serde_json::from_str(json).ok())
    }
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The number of columns of a row.
const COLUMNS: usize = 7;

/// The columns of a row: console ms, agent ms, RSS MiB, guest RSS MiB,
/// overhead MiB, exits, initramfs unpack ms.
fn columns(s: &Sample) -> [Option<f64>; COLUMNS] {
    let f = s.footprint;
    [
        ms(s.console_ready),
        ms(s.agent_answer),
        mib(f.map(|f| f.rss_kib)),
        mib(f.map(|f| f.guest_rss_kib)),
        mib(f.map(|f| f.overhead_kib())),
        s.exits.map(|e| e as f64),
        ms(s.unpack),
    ]
}

const DECIMALS: [usize; COLUMNS] = [0, 0, 1, 1, 2, 0, 0];

/// The medians of each column over `samples` of `vmm` (`None` where no
/// sample had a value).
pub fn medians(samples: &[Sample], vmm: Vmm) -> [Option<f64>; COLUMNS] {
    let mut out = [None; COLUMNS];
    for (i, slot) in out.iter_mut().enumerate() {
        let values: Vec<f64> = samples
            .iter()
            .filter(|s| s.vmm == vmm)
            .filter_map(|s| columns(s)[i])
            .collect();
        *slot = median(&values);
    }
    out
}

/// Renders every sample and the medians per VMM as a text table.
pub fn table(samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:>4} {:>13} {:>12} {:>9} {:>13} {:>13} {:>8} {:>9}  note",
        "vmm",
        "run",
        "console_ms",
        "agent_ms",
        "rss_mib",
        "guest_rss_mib",
        "overhead_mib",
        "exits",
        "unpack_ms"
    );
    let row =
        |out: &mut String, vmm: String, run: String, cols: [Option<f64>; COLUMNS], note: &str| {
            let c: Vec<String> = cols
                .iter()
                .zip(DECIMALS)
                .map(|(v, d)| cell(*v, d))
                .collect();
            let _ = writeln!(
                out,
                "{vmm:<13} {run:>4} {:>13} {:>12} {:>9} {:>13} {:>13} {:>8} {:>9}  {note}",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6]
            );
        };
    for s in samples {
        row(
            &mut out,
            s.vmm.to_string(),
            s.run.to_string(),
            columns(s),
            s.note.as_deref().unwrap_or(""),
        );
    }
    for vmm in [Vmm::Kvm, Vmm::KvmBaseline, Vmm::Qemu] {
        let n = samples.iter().filter(|s| s.vmm == vmm).count();
        if n > 0 {
            row(
                &mut out,
                vmm.to_string(),
                "med".into(),
                medians(samples, vmm),
                &format!("median of {n}"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(vmm: Vmm, run: usize, ready_ms: u64, rss_kib: u64) -> Sample {
        Sample {
            vmm,
            run,
            console_ready: Some(Duration::from_millis(ready_ms)),
            agent_answer: None,
            footprint: Some(Footprint {
                rss_kib,
                pss_kib: rss_kib,
                guest_rss_kib: 1024,
                guest_mapping_kib: 262_144,
            }),
            smaps_guest_rss_kib: None,
            exits: (vmm == Vmm::Kvm).then_some(1000 * run as u64),
            unpack: Some(Duration::from_millis(500)),
            note: None,
        }
    }

    #[test]
    fn medians_per_vmm() {
        let samples = vec![
            sample(Vmm::Kvm, 1, 300, 3072),
            sample(Vmm::Kvm, 2, 100, 2048),
            sample(Vmm::Kvm, 3, 200, 4096),
            sample(Vmm::Qemu, 1, 900, 10_240),
        ];
        let kvm = medians(&samples, Vmm::Kvm);
        assert_eq!(kvm[0], Some(200.0));
        assert_eq!(kvm[1], None);
        assert_eq!(kvm[4], Some(2.0));
        assert_eq!(kvm[5], Some(2000.0));
        assert_eq!(medians(&samples, Vmm::Qemu)[5], None);
        assert_eq!(kvm[6], Some(500.0));
        assert_eq!(medians(&samples, Vmm::Qemu)[0], Some(900.0));
        let text = table(&samples);
        assert!(text.contains("median of 3"), "{text}");
        assert!(text.contains("qemu-microvm"), "{text}");
        let line = samples[0].to_line();
        let output = format!("noise\n{line}\nmore\n");
        assert_eq!(Sample::from_output(&output), Some(samples[0].clone()));
        assert_eq!(Sample::from_output("nothing"), None);
    }
}
