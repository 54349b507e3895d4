//! Host-side material the checks attach to VMs: disk and VPMem images with
//! known contents, share folders with known files, unique MAC addresses.
//!
//! Every image is filled with a pattern that depends on a seed and the byte
//! offset, so a check can tell from any few bytes read in the guest whether
//! they came from the right image at the right place.

use std::io::Write;
use std::path::{Path, PathBuf};

use uvm_api::MacAddress;

use crate::step::{Step, fail};

/// Size of the raw disk images the checks attach: 1 MiB.
pub const DISK_SIZE: u64 = 1 << 20;

/// Size of the VPMem image for slot `n`: a distinct multiple of 2 MiB, so the
/// guest's devices can be told apart by size.
pub fn pmem_size(n: u32) -> u64 {
    (u64::from(n) + 1) * (2 << 20)
}

/// The byte at `offset` of an image made with `seed`.
pub fn pattern_byte(seed: u32, offset: u64) -> u8 {
    let mut x = offset
        .wrapping_add(u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    // Truncation is the point: one byte of the mixed value.
    (x & 0xff) as u8
}

/// Offsets a check reads to compare contents: start, a page in, the middle, the last sector.
pub fn sample_offsets(size: u64) -> Vec<u64> {
    let mut offsets = vec![0, 4096, size / 2 + 17, size.saturating_sub(512)];
    offsets.retain(|o| *o < size);
    offsets.dedup();
    offsets
}

/// How many bytes a check reads at each sample offset.
pub const SAMPLE_LEN: u64 = 64;

/// Bytes at the start of an image that are always written in full.
const FULL_HEAD: u64 = 1 << 20;

/// Writes an image of `size` bytes holding the pattern of `seed`: in full up
/// to 1 MiB; beyond that only around the [`sample_offsets`] (the rest is a
/// hole, read as zeros), which is all a check compares.
pub fn write_image(path: &Path, size: u64, seed: u32) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut regions = vec![(0, size.min(FULL_HEAD))];
    if size > FULL_HEAD {
        for offset in sample_offsets(size) {
            regions.push((offset, (offset + 4096).min(size)));
        }
    }
    let mut file = std::fs::File::create(path)?;
    file.set_len(size)?;
    for (start, end) in regions {
        let data: Vec<u8> = (start..end).map(|o| pattern_byte(seed, o)).collect();
        file.seek(SeekFrom::Start(start))?;
        file.write_all(&data)?;
    }
    file.sync_all()
}

/// Reads `len` bytes at `offset` of a host file.
pub fn read_host(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Creates image `name` in `dir` (a check's scratch directory) and returns its path.
pub(crate) fn image(dir: &Path, name: &str, size: u64, seed: u32) -> Step<PathBuf> {
    let path = dir.join(name);
    write_image(&path, size, seed)
        .map_err(|e| fail(format!("fixture: writing {}: {e}", path.display())))?;
    Ok(path)
}

/// Creates folder `name` in `dir` holding `files` (name, contents) and returns its path.
pub(crate) fn folder(dir: &Path, name: &str, files: &[(String, Vec<u8>)]) -> Step<PathBuf> {
    let path = dir.join(name);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&path)?;
        for (file, data) in files {
            std::fs::write(path.join(file), data)?;
        }
        Ok(())
    };
    write().map_err(|e| fail(format!("fixture: creating {}: {e}", path.display())))?;
    Ok(path)
}

/// The files of share fixture `seed`: three small files with distinct contents.
pub fn share_files(seed: u32) -> Vec<(String, Vec<u8>)> {
    (0..3u32)
        .map(|i| {
            let data = (0..(100 + 37 * u64::from(i)))
                .map(|o| pattern_byte(seed * 7 + i, o))
                .collect();
            (format!("file-{i}.bin"), data)
        })
        .collect()
}

/// A locally administered unicast MAC address, distinct for each `n`.
pub(crate) fn mac(n: u32) -> Step<MacAddress> {
    let [_, a, b, c] = n.to_be_bytes();
    MacAddress::new([0x02, 0x75, 0x76, a, b, c])
        .map_err(|e| fail(format!("fixture: MAC address {n}: {e}")))
}

/// A 64-bit FNV-1a digest, to compare contents without printing them.
pub fn digest(chunks: &[Vec<u8>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for b in chunk {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Numbers fixture files across the process, so every call makes a new file.
static NEXT_FILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `stem` with a number never used before in this process.
pub(crate) fn unique(stem: &str) -> String {
    let n = NEXT_FILE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{stem}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_hold_their_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let path = image(dir.path(), "a.img", 200_000, 3).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 200_000);
        for off in sample_offsets(200_000) {
            let got = read_host(&path, off, 8).unwrap();
            let want: Vec<u8> = (off..off + 8).map(|o| pattern_byte(3, o)).collect();
            assert_eq!(got, want);
        }
        let other: Vec<u8> = (0..64).map(|o| pattern_byte(4, o)).collect();
        assert_ne!(read_host(&path, 0, 64).unwrap(), other);
    }

    #[test]
    fn macs_are_distinct_and_usable() {
        let a = mac(1).unwrap();
        let b = mac(256).unwrap();
        assert_ne!(a, b);
        assert!(a.is_local());
    }
}
