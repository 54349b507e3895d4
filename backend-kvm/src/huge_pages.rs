//! Guest RAM on transparent huge pages where the host allows it, and how
//! much of it is.
//!
//! Guest RAM is a memfd mapped shared (see [`crate::memory`]), so the host
//! backs it with huge pages only when its shared-memory THP policy allows
//! (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`: `advise` with the
//! `MADV_HUGEPAGE` given here, or `always`, `within_size`, `force`). Linux
//! distributions ship it `never`; QEMU's anonymous RAM follows `enabled`
//! instead. A 2 MiB page maps with one TLB entry what takes 512 otherwise,
//! and a nested guest pays for every TLB miss twice.

use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use crate::memory::GuestMem;

/// The host's THP policy files.
const ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const SHMEM_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// The selected value of a THP policy file (`always [madvise] never` ->
/// `madvise`), `None` when the file is missing or has no selection.
pub fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(&text[start..start + len])
}

/// Whether shared memory given `MADV_HUGEPAGE` may get huge pages under
/// the `shmem_enabled` policy `mode`.
pub fn shmem_allows(mode: &str) -> bool {
    matches!(mode, "always" | "within_size" | "advise" | "force")
}

/// Asks for huge pages on every region of `mem` (`MADV_HUGEPAGE`) and
/// logs what the host's policy will make of it. Never fails: without huge
/// pages the guest runs on 4 KiB pages.
pub fn advise(mem: &GuestMem, vm_id: &str) {
    for region in mem.iter() {
        let Ok(host) = region.get_host_address(MemoryRegionAddress(0)) else {
            continue;
        };
        let len = usize::try_from(region.len()).unwrap_or(0);
        // SAFETY: advice on a mapping `mem` owns; madvise changes no
        // memory contents, and a failure is only logged.
        let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
        if rc != 0 {
            tracing::debug!(vm = %vm_id, "madvise(MADV_HUGEPAGE): {}", std::io::Error::last_os_error());
        }
    }
    let shmem = std::fs::read_to_string(SHMEM_ENABLED).unwrap_or_default();
    let anon = std::fs::read_to_string(ENABLED).unwrap_or_default();
    match selected(&shmem) {
        Some(mode) if shmem_allows(mode) => {
            tracing::info!(vm = %vm_id, "guest RAM: transparent huge pages asked for (shmem_enabled={mode})");
        }
        mode => tracing::info!(
            vm = %vm_id,
            "guest RAM on 4 KiB pages: the host's shmem_enabled is {} (enabled={}); `advise` gives it huge pages",
            mode.unwrap_or("unknown"),
            selected(&anon).unwrap_or("unknown"),
        ),
    }
}

/// Bytes of `mem` the host maps with huge pages now (`ShmemPmdMapped`,
/// `FilePmdMapped` and `AnonHugePages` of its mappings in
/// `/proc/self/smaps`); `None` when smaps cannot be read.
pub fn huge_bytes(mem: &GuestMem) -> Option<u64> {
    let starts: Vec<u64> = mem
        .iter()
        .filter_map(|r| r.get_host_address(MemoryRegionAddress(0)).ok())
        .map(|h| h as u64)
        .collect();
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    Some(huge_kib_of(&smaps, &starts) * 1024)
}

/// The huge-page KiB of the smaps entries starting at one of `starts`.
fn huge_kib_of(smaps: &str, starts: &[u64]) -> u64 {
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if let Some((start, _)) = first.split_once('-')
            && let Ok(start) = u64::from_str_radix(start, 16)
        {
            inside = starts.contains(&start);
            continue;
        }
        if inside
            && matches!(
                first,
                "ShmemPmdMapped:" | "FilePmdMapped:" | "AnonHugePages:"
            )
        {
            kib += words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_selected_policy() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(
            selected("always within_size advise [never] deny force"),
            Some("never")
        );
        assert_eq!(selected(""), None);
        assert!(shmem_allows("advise"));
        assert!(!shmem_allows("never"));
        assert!(!shmem_allows("deny"));
    }

    #[test]
    fn counts_huge_pages_of_the_guest_mappings_only() {
        let smaps = "\
7f0000000000-7f0010000000 rw-s 00000000 00:01 5 /memfd:uvm-guest-ram (deleted)
Size:             262144 kB
ShmemPmdMapped:   131072 kB
FilePmdMapped:         0 kB
AnonHugePages:         0 kB
7f0020000000-7f0020200000 rw-p 00000000 00:00 0
AnonHugePages:      2048 kB
";
        assert_eq!(huge_kib_of(smaps, &[0x7f00_0000_0000]), 131_072);
        assert_eq!(huge_kib_of(smaps, &[0x7f00_2000_0000]), 2048);
        assert_eq!(huge_kib_of(smaps, &[0x1000]), 0);
    }

    #[test]
    fn advising_a_small_guest_never_fails() {
        let mem = crate::memory::create(16 << 20).unwrap();
        advise(&mem, "t");
        assert!(huge_bytes(&mem).is_some());
    }
}
