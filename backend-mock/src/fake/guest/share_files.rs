//! The guest's access to the files of a shared folder, which reads and
//! writes the real host directory, confined to it (and to the share's
//! allowed files, if it lists any).

use std::io;
use std::path::{Component, Path, PathBuf};

use uvm_api::{Error, Result, SharedFolder, validate};

/// `name` with `.` components dropped and `/` separators.
fn normalize(name: &str) -> String {
    Path::new(name)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn io_error(kind: io::ErrorKind, message: String) -> Error {
    Error::io(message.clone(), io::Error::new(kind, message))
}

/// The guest's view of one share's files, backed by the host directory.
#[derive(Debug, Clone)]
pub(crate) struct ShareFiles {
    pub share: SharedFolder,
}

impl ShareFiles {
    /// Whether the guest can see `name` (normalized) at all.
    fn visible(&self, name: &str) -> bool {
        self.share.allowed_files.is_empty()
            || self
                .share
                .allowed_files
                .iter()
                .any(|a| normalize(a) == name)
    }

    /// The host path of `name`, checked to stay inside the share.
    fn host_path(&self, name: &str, for_write: bool) -> Result<PathBuf> {
        validate::relative_file_name("path", name)?;
        let normalized = normalize(name);
        if !self.visible(&normalized) {
            let kind = if for_write {
                io::ErrorKind::PermissionDenied
            } else {
                io::ErrorKind::NotFound
            };
            return Err(io_error(
                kind,
                format!(
                    "{name} is not among the files share {} exposes",
                    self.share.name
                ),
            ));
        }
        let root = self
            .share
            .host_path
            .canonicalize()
            .map_err(|e| Error::io(format!("opening share {}", self.share.name), e))?;
        let path = root.join(&normalized);
        // Resolve symbolic links of what exists, and refuse an escape from the share.
        let existing = if for_write && !path.exists() {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            path.clone()
        };
        let resolved = existing
            .canonicalize()
            .map_err(|e| Error::io(format!("opening {name} in share {}", self.share.name), e))?;
        if !resolved.starts_with(&root) {
            return Err(io_error(
                io::ErrorKind::PermissionDenied,
                format!("{name} leads outside share {}", self.share.name),
            ));
        }
        Ok(path)
    }

    /// Files the guest sees, as sorted relative paths.
    pub fn list(&self) -> Result<Vec<String>> {
        let root = &self.share.host_path;
        let mut files = Vec::new();
        if self.share.allowed_files.is_empty() {
            walk(root, "", &mut files)
                .map_err(|e| Error::io(format!("listing share {}", self.share.name), e))?;
        } else {
            for name in &self.share.allowed_files {
                let name = normalize(name);
                if root.join(&name).is_file() {
                    files.push(name);
                }
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.host_path(name, false)?;
        std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {name} in share {}", self.share.name), e))
    }

    pub fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        if self.share.read_only {
            return Err(io_error(
                io::ErrorKind::PermissionDenied,
                format!("share {} is read-only", self.share.name),
            ));
        }
        let path = self.host_path(name, true)?;
        std::fs::write(&path, data)
            .map_err(|e| Error::io(format!("writing {name} in share {}", self.share.name), e))
    }
}

/// Collects the regular files under `dir` (symbolic links are not followed).
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &relative, out)?;
        } else if kind.is_file() {
            out.push(relative);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots() {
        assert_eq!(normalize("./a/./b.txt"), "a/b.txt");
        assert_eq!(normalize("a"), "a");
    }
}
