//! The figures, one run's samples, and the markdown table of medians.

use std::fmt;
use std::fmt::Write as _;

use crate::error::{BenchError, Result};
use crate::stats::median;

/// A group of figures, selected with `--figures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// The SCSI disk: sequential read and write, random reads.
    Disk,
    /// vsock streams, both ways.
    Vsock,
    /// Raw frames out of the guest's NIC.
    Net,
}

impl Group {
    /// Every group, in the order they are measured.
    pub const ALL: [Group; 3] = [Group::Disk, Group::Vsock, Group::Net];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Group::Disk => "disk",
            Group::Vsock => "vsock",
            Group::Net => "net",
        }
    }

    /// Parses `disk,net`; keeps the order of [`Group::ALL`], drops repeats.
    pub fn parse_list(text: &str) -> Result<Vec<Group>> {
        let mut groups = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let group = Group::ALL
                .into_iter()
                .find(|g| g.name() == name)
                .ok_or_else(|| {
                    BenchError::Usage(format!("unknown figure group {name:?}: disk, vsock, net"))
                })?;
            groups.push(group);
        }
        if groups.is_empty() {
            return Err(BenchError::Usage("--figures needs disk,vsock,net".into()));
        }
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// Its figures, in table order.
    pub fn figures(self) -> &'static [Figure] {
        match self {
            Group::Disk => &[Figure::SeqRead, Figure::SeqWrite, Figure::RandRead],
            Group::Vsock => &[Figure::VsockToGuest, Figure::VsockToHost],
            Group::Net => &[Figure::NetToHost],
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Figure {
    /// Sequential reads of the SCSI disk, MB/s.
    SeqRead,
    /// Sequential writes of the SCSI disk, MB/s.
    SeqWrite,
    /// 4 KiB random reads of the SCSI disk, IOPS.
    RandRead,
    /// One vsock stream host to guest, MB/s.
    VsockToGuest,
    /// One vsock stream guest to host, MB/s.
    VsockToHost,
    /// Raw frames guest to host through the NIC and its tap, MB/s.
    NetToHost,
}

impl Figure {
    /// Its label in the table (`queue_depth`: the random reads' threads).
    pub fn label(self, queue_depth: u32) -> String {
        match self {
            Figure::SeqRead => "SCSI seq read, 1 MiB O_DIRECT (MB/s)".into(),
            Figure::SeqWrite => "SCSI seq write, 1 MiB O_DIRECT (MB/s)".into(),
            Figure::RandRead => {
                format!("SCSI 4 KiB random read, QD {queue_depth} (IOPS)")
            }
            Figure::VsockToGuest => "vsock stream host -> guest (MB/s)".into(),
            Figure::VsockToHost => "vsock stream guest -> host (MB/s)".into(),
            Figure::NetToHost => "NIC raw frames guest -> host tap (MB/s)".into(),
        }
    }
}

impl Figure {
    /// Every figure, in table order.
    pub const ALL: [Figure; 6] = [
        Figure::SeqRead,
        Figure::SeqWrite,
        Figure::RandRead,
        Figure::VsockToGuest,
        Figure::VsockToHost,
        Figure::NetToHost,
    ];

    /// The figure whose short name ([`fmt::Display`]) is `name`.
    pub fn from_name(name: &str) -> Option<Figure> {
        Figure::ALL.into_iter().find(|f| f.to_string() == name)
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Figure::SeqRead => "seq-read",
            Figure::SeqWrite => "seq-write",
            Figure::RandRead => "rand-read",
            Figure::VsockToGuest => "vsock-to-guest",
            Figure::VsockToHost => "vsock-to-host",
            Figure::NetToHost => "net-to-host",
        })
    }
}

/// One figure of one run of one VMM.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The VMM's name.
    pub vmm: &'static str,
    /// The run, from 1.
    pub run: usize,
    /// What was measured.
    pub figure: Figure,
    /// The value, in the figure's unit.
    pub value: f64,
    /// VM exits per second during the measurement, where the VMM counts them.
    pub exits_per_sec: Option<f64>,
}

/// What starts each line a child io-bench (`--print-samples`) writes for
/// its parent.
pub const SAMPLE_PREFIX: &str = "io-bench-sample:";

impl Sample {
    /// The line a child io-bench prints for this sample: the prefix, the
    /// figure's short name, the value and the exits per second (`-` when
    /// not counted).
    pub fn to_line(&self) -> String {
        let exits = self
            .exits_per_sec
            .map_or_else(|| "-".to_owned(), |e| e.to_string());
        format!("{SAMPLE_PREFIX} {} {} {exits}", self.figure, self.value)
    }

    /// The sample a line of [`Sample::to_line`] describes, as run `run` of
    /// `vmm`; `None` for any other line.
    pub fn from_line(line: &str, vmm: &'static str, run: usize) -> Option<Sample> {
        let mut words = line.strip_prefix(SAMPLE_PREFIX)?.split_whitespace();
        let figure = Figure::from_name(words.next()?)?;
        let value = words.next()?.parse().ok()?;
        let exits_per_sec = match words.next()? {
            "-" => None,
            e => Some(e.parse().ok()?),
        };
        if words.next().is_some() {
            return None;
        }
        Some(Sample {
            vmm,
            run,
            figure,
            value,
            exits_per_sec,
        })
    }
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_sec(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    bytes as f64 / 1e6 / seconds
}

fn cell(values: &[f64], runs: usize, digits: usize) -> String {
    match median(values) {
        None => "-".into(),
        Some(m) if values.len() == runs => format!("{m:.digits$}"),
        Some(m) => format!("{m:.digits$} ({} of {runs})", values.len()),
    }
}

/// The markdown table of medians: one row per figure of `groups`, per VMM
/// of `vmms` the median value and the median exits per second ("n/a"
/// where the VMM does not count exits, "-" where nothing was measured).
pub fn table(
    samples: &[Sample],
    vmms: &[&'static str],
    groups: &[Group],
    runs: usize,
    queue_depth: u32,
) -> String {
    let mut out = String::from("| figure |");
    for vmm in vmms {
        let _ = write!(out, " {vmm} |");
    }
    for vmm in vmms {
        let _ = write!(out, " {vmm} exits/s |");
    }
    out.push_str("\n|---|");
    for _ in 0..vmms.len() * 2 {
        out.push_str("---:|");
    }
    out.push('\n');
    for figure in groups.iter().flat_map(|g| g.figures()) {
        let _ = write!(out, "| {} |", figure.label(queue_depth));
        let of = |vmm: &str| -> Vec<&Sample> {
            samples
                .iter()
                .filter(|s| s.vmm == vmm && s.figure == *figure)
                .collect()
        };
        for vmm in vmms {
            let values: Vec<f64> = of(vmm).iter().map(|s| s.value).collect();
            let digits = if *figure == Figure::RandRead { 0 } else { 1 };
            let _ = write!(out, " {} |", cell(&values, runs, digits));
        }
        for vmm in vmms {
            let measured = of(vmm);
            let exits: Vec<f64> = measured.iter().filter_map(|s| s.exits_per_sec).collect();
            let text = if !measured.is_empty() && exits.is_empty() {
                "n/a".into()
            } else {
                cell(&exits, runs, 1)
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(vmm: &'static str, run: usize, figure: Figure, value: f64) -> Sample {
        Sample {
            vmm,
            run,
            figure,
            value,
            exits_per_sec: (vmm == "kvm").then_some(value * 10.0),
        }
    }

    #[test]
    fn groups_parse_in_order() {
        assert_eq!(
            Group::parse_list("net,disk,net").unwrap(),
            vec![Group::Disk, Group::Net]
        );
        assert!(Group::parse_list("").is_err());
        assert!(Group::parse_list("disk,cpu").is_err());
        assert_eq!(Group::Vsock.figures().len(), 2);
    }

    #[test]
    fn a_sample_line_round_trips_and_other_lines_are_not_samples() {
        for s in [
            sample("kvm", 1, Figure::NetToHost, 46.25),
            sample("qemu", 1, Figure::RandRead, 1417.0),
        ] {
            let line = s.to_line();
            assert!(line.starts_with("io-bench-sample: "), "{line}");
            let back = Sample::from_line(&line, "kvm-baseline", 4).unwrap();
            assert_eq!(back.figure, s.figure);
            assert_eq!(back.value, s.value);
            assert_eq!(back.exits_per_sec, s.exits_per_sec);
            assert_eq!((back.vmm, back.run), ("kvm-baseline", 4));
        }
        for other in [
            "io-bench: backend-kvm run 1: net-to-host 46.0",
            "io-bench-sample: cpu 1 -",
            "io-bench-sample: net-to-host x -",
            "io-bench-sample: net-to-host 1",
            "io-bench-sample: net-to-host 1 - extra",
        ] {
            assert!(Sample::from_line(other, "k", 1).is_none(), "{other}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(mb_per_sec(2_000_000, 2.0), 1.0);
        assert_eq!(mb_per_sec(5, 0.0), 0.0);
    }

    #[test]
    fn the_table_has_medians_partial_runs_and_missing_cells() {
        let samples = vec![
            sample("kvm", 1, Figure::SeqRead, 100.0),
            sample("kvm", 2, Figure::SeqRead, 300.0),
            sample("kvm", 3, Figure::SeqRead, 200.0),
            sample("qemu", 1, Figure::SeqRead, 50.0),
            sample("qemu", 2, Figure::SeqRead, 70.0),
            sample("kvm", 1, Figure::RandRead, 1234.4),
            sample("kvm", 2, Figure::RandRead, 1000.0),
            sample("kvm", 3, Figure::RandRead, 1500.0),
        ];
        let text = table(&samples, &["kvm", "qemu"], &[Group::Disk], 3, 16);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "| figure | kvm | qemu | kvm exits/s | qemu exits/s |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|---:|");
        assert_eq!(
            lines[2],
            "| SCSI seq read, 1 MiB O_DIRECT (MB/s) | 200.0 | 60.0 (2 of 3) | 2000.0 | n/a |"
        );
        assert_eq!(
            lines[3],
            "| SCSI seq write, 1 MiB O_DIRECT (MB/s) | - | - | - | - |"
        );
        assert_eq!(
            lines[4],
            "| SCSI 4 KiB random read, QD 16 (IOPS) | 1234 | - | 12344.0 | - |"
        );
        assert_eq!(lines.len(), 5);
    }
}
