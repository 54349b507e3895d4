//! Guest RAM in a snapshot: one sparse file holding every RAM region one
//! after the other, and the table of where each region lies in the guest
//! ([`RamLayout`]).
//!
//! Pages that are all zero are not written: the file has a hole there, so
//! a 512 MiB guest that touched 60 MiB takes about 60 MiB of disk. At
//! restore the file is mapped copy-on-write (`MAP_PRIVATE`), so clones of
//! one snapshot share its pages until each writes its own, and the
//! snapshot itself never changes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress, VolatileSlice,
};

use crate::memory::GuestMem;

/// The unit zero pages are skipped in.
const PAGE: usize = 4096;

/// Why guest memory could not be saved or mapped back.
#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    /// The file could not be created, written, opened or mapped.
    #[error("snapshot memory file {path}: {what}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than the layout says.
    #[error("snapshot memory file {path} holds {have} bytes; its layout needs {need}")]
    Short {
        /// The file.
        path: String,
        /// Its size.
        have: u64,
        /// What the layout covers.
        need: u64,
    },
    /// The layout is not one guest memory can have (overlapping or empty
    /// regions, sizes beyond the address space).
    #[error("snapshot memory layout: {0}")]
    Layout(String),
}

/// Where each RAM region lies in the guest and in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamLayout {
    /// `(guest address, length)` of each region, in file order.
    pub regions: Vec<(u64, u64)>,
}

impl RamLayout {
    /// The layout of `mem`.
    pub fn of(mem: &GuestMem) -> RamLayout {
        RamLayout {
            regions: mem.iter().map(|r| (r.start_addr().0, r.len())).collect(),
        }
    }

    /// The bytes the file must hold, once the layout is checked: every
    /// region non-empty and a whole number of pages long (so each one's
    /// file offset can be mapped), and the total within `u64`. A layout
    /// read from a snapshot is untrusted until this passes.
    pub fn total(&self) -> Result<u64, MemoryFileError> {
        let mut total = 0u64;
        for &(start, len) in &self.regions {
            if len == 0 || len % PAGE as u64 != 0 {
                return Err(MemoryFileError::Layout(format!(
                    "the region at {start:#x} is {len} bytes, not a whole number of pages"
                )));
            }
            total = total.checked_add(len).ok_or_else(|| {
                MemoryFileError::Layout("the regions add up to more than 2^64 bytes".into())
            })?;
        }
        Ok(total)
    }
}

fn io<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> MemoryFileError + 'a {
    move |source| MemoryFileError::Io {
        path: path.display().to_string(),
        what,
        source,
    }
}

/// Writes every region of `mem` to a new file at `path`, regions one after
/// the other, skipping all-zero pages (left as holes); returns the layout
/// and the bytes written. The guest must not run meanwhile.
pub fn save(mem: &GuestMem, path: &Path) -> Result<(RamLayout, u64), MemoryFileError> {
    let layout = RamLayout::of(mem);
    let mut file = File::create(path).map_err(io(path, "create"))?;
    let mut written = 0u64;
    let mut offset = 0u64;
    let mut page = vec![0u8; PAGE];
    for region in mem.iter() {
        let len = region.len();
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(PAGE as u64) as usize;
            let slice: VolatileSlice<'_, _> = region
                .get_slice(MemoryRegionAddress(at), n)
                .map_err(|e| MemoryFileError::Layout(e.to_string()))?;
            slice.copy_to(&mut page[..n]);
            if page[..n].iter().any(|b| *b != 0) {
                file.seek(SeekFrom::Start(offset + at))
                    .map_err(io(path, "seek"))?;
                file.write_all(&page[..n]).map_err(io(path, "write"))?;
                written += n as u64;
            }
            at += n as u64;
        }
        offset += len;
    }
    file.set_len(offset).map_err(io(path, "size"))?;
    file.sync_all().map_err(io(path, "sync"))?;
    Ok((layout, written))
}

/// Maps the file at `path` as guest memory of `layout`, copy-on-write:
/// the guest reads the saved pages and its writes stay private.
pub fn map(path: &Path, layout: &RamLayout) -> Result<GuestMem, MemoryFileError> {
    let file = Arc::new(File::open(path).map_err(io(path, "open"))?);
    let have = file.metadata().map_err(io(path, "stat"))?.len();
    let need = layout.total()?;
    if have < need {
        return Err(MemoryFileError::Short {
            path: path.display().to_string(),
            have,
            need,
        });
    }
    let mut regions = Vec::with_capacity(layout.regions.len());
    let mut offset = 0u64;
    for &(start, len) in &layout.regions {
        let size = usize::try_from(len)
            .map_err(|_| MemoryFileError::Layout(format!("a region of {len} bytes")))?;
        let mapping = MmapRegionBuilder::new(size)
            .with_file_offset(FileOffset::from_arc(file.clone(), offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| MemoryFileError::Io {
                path: path.display().to_string(),
                what: "map",
                source: std::io::Error::other(e.to_string()),
            })?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(start)).ok_or_else(|| {
            MemoryFileError::Layout(format!("a region at {start:#x} of {len} bytes overflows"))
        })?;
        regions.push(region);
        // Within the checked total.
        offset += len;
    }
    GuestMem::from_regions(regions).map_err(|e| MemoryFileError::Layout(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use vm_memory::Bytes;

    use super::*;

    #[test]
    fn saved_pages_come_back_and_zero_pages_take_no_disk() {
        let mem = crate::memory::create(64 << 20).unwrap();
        mem.write_slice(b"kernel", GuestAddress(0x10_0000)).unwrap();
        mem.write_slice(&[0xab; 8192], GuestAddress(0x200_0000))
            .unwrap();
        mem.write_obj(0x1122_3344_u32, GuestAddress((64 << 20) - 4))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let (layout, written) = save(&mem, &path).unwrap();
        assert_eq!(layout.total().unwrap(), 64 << 20);
        assert_eq!(written, 4 * 4096, "four pages hold data");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{} bytes on disk for 16 KiB of data",
            meta.blocks() * 512
        );

        let back = map(&path, &layout).unwrap();
        let mut word = [0u8; 6];
        back.read_slice(&mut word, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(&word, b"kernel");
        let value: u32 = back.read_obj(GuestAddress((64 << 20) - 4)).unwrap();
        assert_eq!(value, 0x1122_3344);
        let zero: u64 = back.read_obj(GuestAddress(0x300_0000)).unwrap();
        assert_eq!(zero, 0);
    }

    #[test]
    fn a_mapped_snapshot_is_copy_on_write() {
        let mem = crate::memory::create(16 << 20).unwrap();
        mem.write_obj(7u64, GuestAddress(0x1000)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let (layout, _) = save(&mem, &path).unwrap();
        let first = map(&path, &layout).unwrap();
        let second = map(&path, &layout).unwrap();
        first.write_obj(9u64, GuestAddress(0x1000)).unwrap();
        let seen: u64 = second.read_obj(GuestAddress(0x1000)).unwrap();
        assert_eq!(seen, 7, "one clone's write is not seen by another");
        let third = map(&path, &layout).unwrap();
        let kept: u64 = third.read_obj(GuestAddress(0x1000)).unwrap();
        assert_eq!(kept, 7, "the snapshot file is unchanged");
    }

    #[test]
    fn a_short_file_or_a_bad_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let layout = RamLayout {
            regions: vec![(0, 8192)],
        };
        assert!(matches!(
            map(&path, &layout),
            Err(MemoryFileError::Short {
                have: 4096,
                need: 8192,
                ..
            })
        ));
        let empty = RamLayout {
            regions: vec![(0, 0)],
        };
        assert!(matches!(
            map(&path, &empty),
            Err(MemoryFileError::Layout(_))
        ));
        let unaligned = RamLayout {
            regions: vec![(0, 4096 + 512)],
        };
        assert!(matches!(
            map(&path, &unaligned),
            Err(MemoryFileError::Layout(_))
        ));
        let huge = RamLayout {
            regions: vec![(0, 1 << 63), (1 << 63, 1 << 63)],
        };
        assert!(matches!(map(&path, &huge), Err(MemoryFileError::Layout(_))));
        let overlapping = RamLayout {
            regions: vec![(0, 4096), (0, 4096)],
        };
        std::fs::write(&path, [0u8; 8192]).unwrap();
        assert!(matches!(
            map(&path, &overlapping),
            Err(MemoryFileError::Layout(_))
        ));
    }
}
