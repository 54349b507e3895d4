//! `/proc/<pid>/smaps` parsing: how much of a process is resident, and how
//! much of that is guest memory (the anonymous mapping of the guest RAM).

/// One mapping of `/proc/<pid>/smaps`, sizes in KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Permissions (`rw-p`).
    pub perms: String,
    /// The path or pseudo name (`[heap]`), empty for anonymous memory.
    pub name: String,
    /// `Size:`.
    pub size_kib: u64,
    /// `Rss:`.
    pub rss_kib: u64,
    /// `Pss:`.
    pub pss_kib: u64,
}

impl Mapping {
    /// Whether this is anonymous memory without a name (not the heap, a
    /// stack or a file).
    pub fn is_anonymous(&self) -> bool {
        self.name.is_empty()
    }
}

fn parse_header(line: &str) -> Option<Mapping> {
    let mut words = line.split_whitespace();
    let (start, end) = words.next()?.split_once('-')?;
    let perms = words.next()?.to_owned();
    // offset, device, inode, then the optional name (may contain spaces).
    let name = words.skip(3).collect::<Vec<_>>().join(" ");
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        name,
        ..Mapping::default()
    })
}

/// Parses the text of an smaps file; lines it does not understand are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(key) = first.strip_suffix(':') {
            let Some(current) = out.last_mut() else {
                continue;
            };
            let value = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok());
            match (key, value) {
                ("Size", Some(v)) => current.size_kib = v,
                ("Rss", Some(v)) => current.rss_kib = v,
                ("Pss", Some(v)) => current.pss_kib = v,
                _ => {}
            }
        } else if let Some(mapping) = parse_header(line) {
            out.push(mapping);
        }
    }
    out
}

/// Resident memory of a process, split into guest memory and the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Footprint {
    /// Sum of `Rss:` over all mappings, KiB.
    pub rss_kib: u64,
    /// Sum of `Pss:` over all mappings, KiB.
    pub pss_kib: u64,
    /// `Rss:` of the mapping taken as guest RAM, KiB.
    pub guest_rss_kib: u64,
    /// `Size:` of that mapping, KiB (0 if none was found).
    pub guest_mapping_kib: u64,
}

impl Footprint {
    /// Resident memory beyond guest memory, KiB.
    pub fn overhead_kib(&self) -> u64 {
        self.rss_kib.saturating_sub(self.guest_rss_kib)
    }
}

/// Sums the mappings and picks the guest RAM: the smallest anonymous
/// mapping at least `guest_kib` large (a VMM maps guest RAM of that size in
/// one piece; a larger one may have been merged with a neighbour).
pub fn footprint(mappings: &[Mapping], guest_kib: u64) -> Footprint {
    let guest = mappings
        .iter()
        .filter(|m| m.is_anonymous() && m.size_kib >= guest_kib)
        .min_by_key(|m| m.size_kib);
    Footprint {
        rss_kib: mappings.iter().map(|m| m.rss_kib).sum(),
        pss_kib: mappings.iter().map(|m| m.pss_kib).sum(),
        guest_rss_kib: guest.map_or(0, |m| m.rss_kib),
        guest_mapping_kib: guest.map_or(0, |m| m.size_kib),
    }
}

/// Reads `/proc/<pid>/smaps` (`pid` `None`: this process) and computes its
/// [`Footprint`].
pub fn read_footprint(pid: Option<u32>, guest_kib: u64) -> std::io::Result<Footprint> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/smaps"),
        None => "/proc/self/smaps".to_owned(),
    };
    let text = std::fs::read_to_string(path)?;
    Ok(footprint(&parse(&text), guest_kib))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0b00000 r-xp 00000000 08:01 1234                       /usr/bin/qemu-system-x86_64
Size:               1024 kB
KernelPageSize:        4 kB
Rss:                 800 kB
Pss:                 400 kB
VmFlags: rd ex mr mw me dw
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 512 kB
Pss:                 512 kB
7f0000000000-7f0010000000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:              120000 kB
Pss:              120000 kB
7f0010000000-7f0010001000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
Pss:                   0 kB
7f0020000000-7f0030400000 rw-p 00000000 00:00 0 
Size:             266240 kB
Rss:                 100 kB
Pss:                 100 kB
7f0040000000-7f0040021000 rw-p 00000000 00:00 0 
Size:                132 kB
Rss:                  64 kB
Pss:                  64 kB
";

    #[test]
    fn parses_headers_and_sizes() {
        let maps = parse(SAMPLE);
        assert_eq!(maps.len(), 6);
        assert_eq!(maps[0].name, "/usr/bin/qemu-system-x86_64");
        assert_eq!(maps[0].perms, "r-xp");
        assert_eq!(
            (maps[0].size_kib, maps[0].rss_kib, maps[0].pss_kib),
            (1024, 800, 400)
        );
        assert_eq!(maps[1].name, "[heap]");
        assert!(maps[2].is_anonymous());
        assert_eq!(maps[2].start, 0x7f00_0000_0000);
        assert_eq!(maps[2].end - maps[2].start, 262_144 * 1024);
    }

    #[test]
    fn picks_the_guest_mapping() {
        let f = footprint(&parse(SAMPLE), 262_144);
        assert_eq!(f.rss_kib, 800 + 512 + 120_000 + 100 + 64);
        assert_eq!(f.pss_kib, 400 + 512 + 120_000 + 100 + 64);
        assert_eq!(f.guest_mapping_kib, 262_144);
        assert_eq!(f.guest_rss_kib, 120_000);
        assert_eq!(f.overhead_kib(), 800 + 512 + 100 + 64);
        // No mapping that large: everything is overhead.
        let none = footprint(&parse(SAMPLE), 1 << 30);
        assert_eq!(none.guest_rss_kib, 0);
        assert_eq!(none.overhead_kib(), none.rss_kib);
    }

    #[test]
    fn reads_this_process() {
        let f = read_footprint(None, u64::MAX).unwrap();
        assert!(f.rss_kib > 0);
    }

    #[test]
    fn skips_garbage() {
        assert!(parse("Rss: 5 kB\nnot a header\n\n").is_empty());
    }
}
