//! Where cached artifacts live, outside the repository.

use std::path::PathBuf;

/// `$UVM_CACHE_DIR`, else `$XDG_CACHE_HOME/uvm`, else `$HOME/.cache/uvm`,
/// else `/tmp/uvm-cache`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("UVM_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("uvm");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/uvm"),
        None => PathBuf::from("/tmp/uvm-cache"),
    }
}

/// Makes a version string safe as a path component (`1:1.35.0-4` → `1-1.35.0-4`).
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// 64-bit FNV-1a over several byte strings (with length separators), to
/// notice when the inputs of a cached artifact changed.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for part in parts {
        eat(&(part.len() as u64).to_le_bytes());
        eat(part);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_and_fingerprints() {
        assert_eq!(sanitize("1:1.35.0-4+deb12u1+b1"), "1-1.35.0-4+deb12u1+b1");
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
    }
}
