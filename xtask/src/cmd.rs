//! Running external programs with clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, XtaskError};

/// Finds `program` on `PATH` (also `/usr/sbin` and `/sbin`, which a non-login
/// root shell may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Like [`which`], failing with an install hint.
pub fn require(program: &str, hint: &str) -> Result<PathBuf> {
    which(program).ok_or_else(|| XtaskError::MissingTool {
        program: program.to_owned(),
        hint: hint.to_owned(),
    })
}

/// Renders a command for messages.
pub fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command with inherited stdio; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = display(command);
    let status = command.status().map_err(|e| XtaskError::CommandFailed {
        command: shown.clone(),
        status: format!("could not start: {e}"),
        output: String::new(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(XtaskError::CommandFailed {
            command: shown,
            status: status.to_string(),
            output: String::new(),
        })
    }
}

/// Runs a command and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output(command: &mut Command) -> Result<String> {
    let shown = display(command);
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| XtaskError::CommandFailed {
            command: shown.clone(),
            status: format!("could not start: {e}"),
            output: String::new(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(XtaskError::CommandFailed {
            command: shown,
            status: out.status.to_string(),
            output: format!(":\n{}", stderr.trim_end()),
        })
    }
}

/// Creates a directory and its parents.
pub fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(XtaskError::io("create directory", path))
}
