//! Hard-linking a file from inside a share without following symbolic
//! links, so that an allowed file's path cannot lead out of the share.
//!
//! The walk goes from an fd of the share's root, one component at a time
//! (`openat` with `O_NOFOLLOW`, `fstatat` with `AT_SYMLINK_NOFOLLOW`,
//! `linkat` without `AT_SYMLINK_FOLLOW`): a symbolic link anywhere below
//! the root is refused with [`NoFollowError::Symlink`], and replacing a
//! checked directory by a link while the walk runs gains nothing, since
//! the walk holds the directory's fd, not its path.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why an allowed file could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum NoFollowError {
    /// A component of the file's path inside the share is a symbolic link.
    #[error("{0} is a symbolic link; links inside a share are not followed")]
    Symlink(PathBuf),
    /// The name is not a plain relative path (no `..`, no NUL bytes).
    #[error("{0:?} is not a plain relative path inside the share")]
    BadName(String),
    /// The OS refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The path worked on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// What [`link_file`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Linked {
    /// The regular file is linked at the target.
    Linked,
    /// There is no such file, or it is not a regular file: nothing linked.
    Skipped,
}

fn cstr(path: &Path, name: &str) -> Result<CString, NoFollowError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| NoFollowError::BadName(name.to_owned()))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NoFollowError + '_ {
    move |source| NoFollowError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` if there is no entry.
fn lstat_at(dir: &OwnedFd, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open fd, `name` a NUL-terminated string and `st`
    // a writable stat buffer, all alive for the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        return Ok(Some(st));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
        _ => Err(e),
    }
}

/// `openat(dir, name)` as a directory, never through a symbolic link.
fn open_dir_at(dir: Option<&OwnedFd>, name: &CString) -> io::Result<OwnedFd> {
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let nofollow = if dir.is_some() { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: `at` is AT_FDCWD or an open fd and `name` a NUL-terminated
    // string, both alive for the call.
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | nofollow,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const fn is(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// Hard-links the regular file `name` (relative to the share `root`) at
/// `target` (creating `target`'s parent directories), refusing symbolic links anywhere below `root` (the root
/// itself may be one: it is the caller's configuration).
pub fn link_file(root: &Path, name: &str, target: &Path) -> Result<Linked, NoFollowError> {
    let parts: Vec<&std::ffi::OsStr> = Path::new(name)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(p) => Ok(p),
            _ => Err(NoFollowError::BadName(name.to_owned())),
        })
        .collect::<Result<_, _>>()?;
    let Some((last, dirs)) = parts.split_last() else {
        return Err(NoFollowError::BadName(name.to_owned()));
    };
    let mut dir = open_dir_at(None, &cstr(root, name)?).map_err(io_err(root))?;
    let mut here = root.to_path_buf();
    for part in dirs {
        here.push(part);
        let c = cstr(Path::new(part), name)?;
        match lstat_at(&dir, &c).map_err(io_err(&here))? {
            None => return Ok(Linked::Skipped),
            Some(st) if is(&st, libc::S_IFLNK) => return Err(NoFollowError::Symlink(here)),
            Some(st) if !is(&st, libc::S_IFDIR) => return Ok(Linked::Skipped),
            Some(_) => {}
        }
        dir = match open_dir_at(Some(&dir), &c) {
            Ok(d) => d,
            // Replaced by a link since the stat: O_NOFOLLOW refused it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(NoFollowError::Symlink(here));
            }
            Err(e) => return Err(io_err(&here)(e)),
        };
    }
    here.push(last);
    let c = cstr(Path::new(last), name)?;
    match lstat_at(&dir, &c).map_err(io_err(&here))? {
        None => return Ok(Linked::Skipped),
        Some(st) if is(&st, libc::S_IFLNK) => return Err(NoFollowError::Symlink(here)),
        Some(st) if !is(&st, libc::S_IFREG) => return Ok(Linked::Skipped),
        Some(_) => {}
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let target_c = cstr(target, name)?;
    // SAFETY: `dir` is an open fd; both names are NUL-terminated strings
    // alive for the call. Flags 0: the entry itself is linked, never what a
    // symbolic link points to.
    let rc = unsafe {
        libc::linkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            0,
        )
    };
    if rc != 0 {
        return Err(io_err(&here)(io::Error::last_os_error()));
    }
    // The entry may have become a link between the stat and the link.
    let linked = std::fs::symlink_metadata(target).map_err(io_err(target))?;
    if !linked.file_type().is_file() {
        let _ = std::fs::remove_file(target);
        return Err(NoFollowError::Symlink(here));
    }
    Ok(Linked::Linked)
}
