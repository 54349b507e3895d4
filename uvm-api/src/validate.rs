//! Input checks shared by the config builder and every backend, so that the
//! same bad input gives the same error whichever backend runs.

use std::path::{Component, Path};

use crate::error::{Error, Result};

/// Longest identifier accepted (VM ids, NIC ids, share names, endpoints).
pub const MAX_IDENTIFIER_LEN: usize = 64;

/// Checks an identifier: 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting with `-` or `.`.
pub fn identifier(argument: &str, value: &str) -> Result<()> {
    let bad = |reason: String| Err(Error::invalid_argument(argument, reason));
    if value.is_empty() {
        return bad("must not be empty".into());
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return bad(format!(
            "{} characters is longer than {MAX_IDENTIFIER_LEN}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return bad(format!(
            "{value:?} contains {c:?}; use letters, digits, '_', '-', '.'"
        ));
    }
    if value.starts_with(['-', '.']) {
        return bad(format!("{value:?} must not start with '-' or '.'"));
    }
    Ok(())
}

/// Checks a host path is absolute (without checking it exists).
pub fn absolute_path(argument: &str, path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid_argument(argument, "must not be empty"));
    }
    if !path.is_absolute() {
        return Err(Error::invalid_argument(
            argument,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    Ok(())
}

/// Checks a host path is absolute and exists.
pub fn existing_absolute_path(argument: &str, path: &Path) -> Result<()> {
    absolute_path(argument, path)?;
    match path.try_exists() {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::invalid_argument(
            argument,
            format!("{} does not exist", path.display()),
        )),
        Err(e) => Err(Error::io(format!("checking {}", path.display()), e)),
    }
}

/// The length of the regular file at `path`: `InvalidArgument` for a
/// directory or any other kind of file, `Io` if its metadata cannot be read.
pub fn regular_file_len(argument: &str, path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Error::invalid_argument(
            argument,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(meta.len())
}

/// Checks a file name relative to a shared folder: not empty, not absolute, no `..`.
pub fn relative_file_name(argument: &str, name: &str) -> Result<()> {
    let path = Path::new(name);
    let escapes = path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if name.is_empty() || escapes {
        return Err(Error::invalid_argument(
            argument,
            format!("{name:?} must be a relative path inside the share"),
        ));
    }
    Ok(())
}

/// The contract's rule for removing SCSI controller `index`: it must hold
/// no disk (attached or still being released); `disks` is how many it holds.
///
/// # Errors
/// `InvalidArgument` (argument `index`) if `disks` is not zero.
pub fn scsi_controller_empty(index: u8, disks: usize) -> Result<()> {
    if disks > 0 {
        return Err(Error::invalid_argument(
            "index",
            format!("controller {index} still holds {disks} disk(s); remove them first"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for good in ["a", "vm-1", "A_b.c", &"x".repeat(64)] {
            identifier("id", good).unwrap();
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "é", &"x".repeat(65)] {
            let err = identifier("id", bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { ref argument, .. } if argument == "id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths() {
        existing_absolute_path("p", Path::new("/")).unwrap();
        assert!(existing_absolute_path("p", Path::new("tmp")).is_err());
        assert!(existing_absolute_path("p", Path::new("")).is_err());
        assert!(existing_absolute_path("p", Path::new("/definitely/not/here")).is_err());
        relative_file_name("f", "a/b.txt").unwrap();
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(relative_file_name("f", bad).is_err(), "{bad}");
        }
    }
}
