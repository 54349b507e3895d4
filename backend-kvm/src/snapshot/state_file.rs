//! The snapshot state file: a small fixed header, a JSON body, and a
//! checksum of the body, so that a reader tells a file that is not a
//! snapshot, one of another format version, a cut-off copy and a damaged
//! one apart, each with its own [`StateFileError`], before it reads anything.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic, [`MAGIC`] (`uvmsnap` and a NUL) |
//! | 8 | 4 | format version, little endian ([`FORMAT_VERSION`]) |
//! | 12 | 8 | body length in bytes, little endian (at most [`MAX_BODY`]) |
//! | 20 | 4 | CRC-32 (IEEE, as zlib and gzip compute it) of the body, little endian |
//! | 24 | length | the body: the state as JSON |
//!
//! Nothing follows the body. The body's own shape is versioned by the
//! format version: a reader of version 1 refuses version 2 with
//! [`StateFileError::Version`] rather than misread it. Guest memory is not in
//! this file (it is a separate sparse file); the body stays small, so the
//! reader refuses a length over [`MAX_BODY`] before allocating anything.
//!
//! Writes go to a temporary file in the same directory, are synced and
//! then renamed over the destination, so a crash never leaves a half file
//! under the final name.

use std::io::{Read, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first 8 bytes of every state file.
pub const MAGIC: [u8; 8] = *b"uvmsnap\0";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The largest body accepted (the state of a VM is kilobytes; memory is
/// apart).
pub const MAX_BODY: u64 = 64 << 20;
/// The header's size.
pub const HEADER_LEN: usize = 24;

/// Why a state file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file could not be opened, read, written or renamed.
    #[error("snapshot state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with [`MAGIC`]: it is not a uvm snapshot.
    #[error("{path} is not a uvm snapshot state file (it does not start with the magic bytes)")]
    Foreign {
        /// The file.
        path: String,
    },
    /// The file is of a format version this code does not read.
    #[error("{path} is a snapshot of format version {found}; this build reads version {supported}")]
    Version {
        /// The file.
        path: String,
        /// The version in the file.
        found: u32,
        /// The version this code reads.
        supported: u32,
    },
    /// The file ends before its header or body does.
    #[error("{path} is truncated: {have} bytes where {need} were expected")]
    Truncated {
        /// The file.
        path: String,
        /// Its size.
        have: u64,
        /// The size its header announces (or the header's own size).
        need: u64,
    },
    /// The header announces a body larger than [`MAX_BODY`].
    #[error("{path} announces a state of {length} bytes, over the {MAX_BODY}-byte limit")]
    TooLarge {
        /// The file.
        path: String,
        /// The announced length.
        length: u64,
    },
    /// Bytes follow the body.
    #[error("{path} has {extra} bytes after its state")]
    TrailingBytes {
        /// The file.
        path: String,
        /// How many.
        extra: u64,
    },
    /// The body does not match its checksum: the file is damaged.
    #[error("{path} is damaged: its state does not match its checksum")]
    Checksum {
        /// The file.
        path: String,
    },
    /// The body is intact but does not describe the expected state (a
    /// writer bug, or a file edited and re-checksummed).
    #[error("{path}: the state does not decode: {reason}")]
    Body {
        /// The file.
        path: String,
        /// What the decoder said.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StateFileError + '_ {
    move |source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The bytes of a state file holding `state`.
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, serde_json::Error> {
    let body = serde_json::to_vec(state)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// The state in `bytes`, the content of the file at `path` (named in the
/// errors).
pub fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StateFileError> {
    let name = || path.display().to_string();
    let have = bytes.len() as u64;
    let field = |at: usize, len: usize| bytes.get(at..at + len);
    // A file too short for the magic is judged by what it has.
    let magic = field(0, MAGIC.len()).unwrap_or(bytes);
    if !MAGIC.starts_with(magic) || magic.is_empty() {
        return Err(StateFileError::Foreign { path: name() });
    }
    let header = field(0, HEADER_LEN).ok_or(StateFileError::Truncated {
        path: name(),
        have,
        need: HEADER_LEN as u64,
    })?;
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(StateFileError::Version {
            path: name(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut length_bytes = [0u8; 8];
    length_bytes.copy_from_slice(&header[12..20]);
    let length = u64::from_le_bytes(length_bytes);
    if length > MAX_BODY {
        return Err(StateFileError::TooLarge {
            path: name(),
            length,
        });
    }
    let need = HEADER_LEN as u64 + length;
    if have < need {
        return Err(StateFileError::Truncated {
            path: name(),
            have,
            need,
        });
    }
    if have > need {
        return Err(StateFileError::TrailingBytes {
            path: name(),
            extra: have - need,
        });
    }
    let body = &bytes[HEADER_LEN..];
    if crc32fast::hash(body) != u32_at(20) {
        return Err(StateFileError::Checksum { path: name() });
    }
    serde_json::from_slice(body).map_err(|e| StateFileError::Body {
        path: name(),
        reason: e.to_string(),
    })
}

/// Writes `state` to `path`: to a temporary file beside it, synced, then
/// renamed over it.
pub fn write<T: Serialize>(path: &Path, state: &T) -> Result<(), StateFileError> {
    let bytes = encode(state).map_err(|e| StateFileError::Body {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io_error(path))?;
    file.write_all(&bytes).map_err(io_error(path))?;
    file.as_file().sync_all().map_err(io_error(path))?;
    file.persist(path).map_err(|e| io_error(path)(e.error))?;
    Ok(())
}

/// Reads the state in the file at `path`: at most a header and the
/// largest body are read, whatever the file's size, then [`decode`]d.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, StateFileError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let size = file.metadata().map_err(io_error(path))?.len();
    // Never more than a header and the largest body, whatever the file
    // claims to be: a larger file is refused by `decode` anyway.
    let cap = HEADER_LEN as u64 + MAX_BODY + 1;
    let mut bytes = Vec::with_capacity(size.min(cap) as usize);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    decode(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: String,
        vcpus: u8,
        registers: Vec<u64>,
    }

    fn sample() -> Sample {
        Sample {
            id: "vm-1".into(),
            vcpus: 2,
            registers: vec![0xfff0, 0xffff_ffff_8100_0000, 7],
        }
    }

    fn path() -> &'static Path {
        Path::new("state")
    }

    /// A small xorshift generator: the tests repeat exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn a_state_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        write(&file, &sample()).unwrap();
        let back: Sample = read(&file).unwrap();
        assert_eq!(back, sample());
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..8], b"uvmsnap\0");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = encode(&sample()).unwrap();
        for len in 0..bytes.len() {
            match decode::<Sample>(path(), &bytes[..len]) {
                Err(StateFileError::Truncated { have, .. }) => assert_eq!(have, len as u64),
                Err(StateFileError::Foreign { .. }) => assert_eq!(len, 0, "a prefix of the magic"),
                other => panic!("cut at {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_a_typed_error() {
        let bytes = encode(&sample()).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let result = decode::<Sample>(path(), &flipped);
            let expected_kind = match bit / 8 {
                0..=7 => matches!(result, Err(StateFileError::Foreign { .. })),
                8..=11 => matches!(result, Err(StateFileError::Version { .. })),
                12..=19 => matches!(
                    result,
                    Err(StateFileError::Truncated { .. }
                        | StateFileError::TrailingBytes { .. }
                        | StateFileError::TooLarge { .. })
                ),
                _ => matches!(result, Err(StateFileError::Checksum { .. })),
            };
            assert!(expected_kind, "bit {bit}: {result:?}");
        }
    }

    #[test]
    fn random_damage_never_panics_and_never_passes() {
        let bytes = encode(&sample()).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let mut damaged = bytes.clone();
            let flips = 1 + rng.next() % 8;
            for _ in 0..flips {
                let at = (rng.next() % damaged.len() as u64) as usize;
                damaged[at] ^= 1 << (rng.next() % 8);
            }
            if rng.next().is_multiple_of(4) {
                damaged.truncate((rng.next() % damaged.len() as u64) as usize);
            }
            if damaged == bytes {
                continue;
            }
            assert!(decode::<Sample>(path(), &damaged).is_err());
        }
    }

    #[test]
    fn other_files_versions_and_sizes_are_refused_by_name() {
        assert!(matches!(
            decode::<Sample>(path(), b"{\"id\":\"vm-1\"}"),
            Err(StateFileError::Foreign { .. })
        ));
        let mut bytes = encode(&sample()).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        match decode::<Sample>(path(), &bytes) {
            Err(e @ StateFileError::Version { found: 2, .. }) => {
                assert!(e.to_string().contains("reads version 1"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let mut bytes = encode(&sample()).unwrap();
        bytes[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Sample>(path(), &bytes),
            Err(StateFileError::TooLarge { .. })
        ));
        let mut bytes = encode(&sample()).unwrap();
        bytes.push(b' ');
        assert!(matches!(
            decode::<Sample>(path(), &bytes),
            Err(StateFileError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn an_intact_file_of_another_shape_is_a_body_error() {
        let bytes = encode(&vec![1u8, 2, 3]).unwrap();
        assert!(matches!(
            decode::<Sample>(path(), &bytes),
            Err(StateFileError::Body { .. })
        ));
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = read::<Sample>(Path::new("/nonexistent/uvm/state")).unwrap_err();
        assert!(matches!(err, StateFileError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/uvm/state"), "{err}");
    }
}
