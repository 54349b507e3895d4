//! Extracting the ELF `vmlinux` from a bzImage whose payload is LZ4
//! compressed (legacy LZ4 format, as Debian's x86 kernels are built), for
//! VMMs that load ELF kernels (the vmlinux carries a PVH entry note).

use crate::error::{Result, XtaskError};
use std::path::Path;

/// The magic of the legacy LZ4 format (`lz4 -l`).
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;

/// The most one legacy block decompresses to (8 MiB).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

fn bad(path: &Path, message: impl Into<String>) -> XtaskError {
    XtaskError::BadFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// The compressed payload of a bzImage (boot protocol 2.08 or later).
pub fn payload(bzimage: &[u8]) -> Option<&[u8]> {
    if bzimage.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let setup_sects = match *bzimage.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let offset = usize::try_from(u32_at(bzimage, 0x248)?).ok()?;
    let length = usize::try_from(u32_at(bzimage, 0x24c)?).ok()?;
    let start = (setup_sects + 1) * 512 + offset;
    bzimage.get(start..start.checked_add(length)?)
}

/// Decompresses a legacy-format LZ4 stream; trailing bytes that are not a
/// whole block (the kernel appends the decompressed size) are ignored.
pub fn lz4_legacy(data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if u32_at(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err("not a legacy LZ4 stream (wrong magic)".into());
    }
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut at = 4;
    while let Some(size) = u32_at(data, at) {
        if size == LZ4_LEGACY_MAGIC {
            at += 4;
            continue;
        }
        let size = usize::try_from(size).map_err(|e| e.to_string())?;
        let Some(input) = data.get(at + 4..at + 4 + size) else {
            break;
        };
        let n = lz4_flex::block::decompress_into(input, &mut block)
            .map_err(|e| format!("LZ4 block at offset {at}: {e}"))?;
        out.extend_from_slice(&block[..n]);
        at += 4 + size;
    }
    Ok(out)
}

/// Extracts the ELF vmlinux from the bzImage at `path`.
pub fn extract(path: &Path) -> Result<Vec<u8>> {
    let image = std::fs::read(path).map_err(XtaskError::io("read kernel", path))?;
    let payload =
        payload(&image).ok_or_else(|| bad(path, "not a bzImage with a payload header"))?;
    let elf = lz4_legacy(payload).map_err(|e| bad(path, format!("payload: {e}")))?;
    if !elf.starts_with(b"\x7fELF") {
        return Err(bad(path, "the decompressed payload is not an ELF file"));
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompresses_legacy_blocks_and_ignores_the_size_trailer() {
        let first = b"\x7fELF hello hello hello hello".to_vec();
        let second = b"world world world".to_vec();
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in [&first, &second] {
            let compressed = lz4_flex::block::compress(chunk);
            stream.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
            stream.extend_from_slice(&compressed);
        }
        stream.extend_from_slice(&((first.len() + second.len()) as u32).to_le_bytes());
        let out = lz4_legacy(&stream).unwrap();
        assert_eq!(out, [first, second].concat());
        assert!(lz4_legacy(b"\0\0\0\0").is_err());
    }

    #[test]
    fn finds_the_payload() {
        let mut image = vec![0u8; 0x1000];
        image[0x1f1] = 1; // one setup sector: code starts at 1024
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&4u32.to_le_bytes());
        image[1040..1044].copy_from_slice(b"LZ4!");
        assert_eq!(payload(&image), Some(&b"LZ4!"[..]));
        assert_eq!(payload(&[0u8; 16]), None);
    }
}
