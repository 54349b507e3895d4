//! How the simulated guest names devices, as Linux does: `sda`, `eth0`, `pmem0`.

/// The Linux name of the `index`-th SCSI disk: sda..sdz, sdaa, sdab, ...
pub(crate) fn disk_name(index: usize) -> String {
    let mut n = index + 1;
    let mut letters = Vec::new();
    while n > 0 {
        n -= 1;
        letters.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    letters.iter().rev().fold(String::from("sd"), |mut s, c| {
        s.push(*c);
        s
    })
}

/// The index of a Linux SCSI disk name (`sda` is 0), the inverse of [`disk_name`].
pub(crate) fn disk_index(name: &str) -> Option<usize> {
    let letters = name.strip_prefix("sd").filter(|l| !l.is_empty())?;
    let mut n: usize = 0;
    for c in letters.bytes() {
        if !c.is_ascii_lowercase() {
            return None;
        }
        n = n.checked_mul(26)?.checked_add(usize::from(c - b'a') + 1)?;
    }
    n.checked_sub(1)
}

/// The Linux name of the interface numbered `index`.
pub(crate) fn nic_name(index: usize) -> String {
    format!("eth{index}")
}

/// The Linux name of the persistent-memory device in slot `id`.
pub(crate) fn pmem_name(id: u32) -> String {
    format!("pmem{id}")
}

/// The lowest index not in `used`.
pub(crate) fn lowest_free(used: impl IntoIterator<Item = usize>) -> usize {
    let mut used: Vec<usize> = used.into_iter().collect();
    used.sort_unstable();
    used.dedup();
    used.iter()
        .enumerate()
        .find(|(i, u)| i != *u)
        .map_or(used.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_disk_names() {
        assert_eq!(disk_name(0), "sda");
        assert_eq!(disk_name(25), "sdz");
        assert_eq!(disk_name(26), "sdaa");
        assert_eq!(disk_name(27), "sdab");
        assert_eq!(disk_name(26 + 26 * 26), "sdaaa");
        for i in [0, 1, 25, 26, 27, 701, 702, 5000] {
            assert_eq!(disk_index(&disk_name(i)), Some(i));
        }
        assert_eq!(disk_index("sd"), None);
        assert_eq!(disk_index("hda"), None);
        assert_eq!(disk_index("sdA"), None);
    }

    #[test]
    fn lowest_free_fills_holes() {
        assert_eq!(lowest_free([]), 0);
        assert_eq!(lowest_free([0, 1, 2]), 3);
        assert_eq!(lowest_free([2, 0, 3]), 1);
        assert_eq!(lowest_free([1, 1]), 0);
    }
}
