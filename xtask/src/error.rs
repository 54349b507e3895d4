//! The xtask error type.

use std::path::PathBuf;

/// Everything that can make an xtask command fail.
#[derive(Debug, thiserror::Error)]
pub enum XtaskError {
    /// The command line could not be understood.
    #[error("{0}\n\n{usage}", usage = crate::USAGE)]
    Usage(String),
    /// A required program is missing; the message says what to install.
    #[error("`{program}` is not installed: {hint}")]
    MissingTool {
        /// The program that was looked for.
        program: String,
        /// What to do about it.
        hint: String,
    },
    /// An apt package is not known to apt (even after `apt-get update`).
    #[error("apt does not know package `{package}`: {hint}")]
    MissingPackage {
        /// The package name.
        package: String,
        /// What to do about it.
        hint: String,
    },
    /// A program ran but failed.
    #[error("`{command}` failed ({status}){output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr, if captured.
        output: String,
    },
    /// A file system operation failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file had unexpected contents (kernel image, module, JSON).
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The nested lab's L1 kernel reported a soft lockup or an RCU stall
    /// (a fault of the TCG-emulated L1, see `xtask/src/lockup.rs`); the L1
    /// was stopped at once rather than left to hang until the timeout.
    #[error("the L1 kernel reported a lockup after {seconds:.0}s: {line} (console log: {})", log.display())]
    L1Lockup {
        /// The console line that reported it.
        line: String,
        /// Seconds from the L1's start.
        seconds: f64,
        /// The L1 console log.
        log: PathBuf,
    },
    /// The nested lab's L1 printed nothing for longer than
    /// `--silence-timeout` while its program ran (a hung L1 kernel, or a
    /// program stuck without a word); the L1 was stopped then rather than
    /// left to hang until the overall timeout.
    #[error("the L1 printed nothing for {silent_secs}s (after {seconds:.0}s of its run; console log: {})", log.display())]
    L1Silent {
        /// The silence that ended the run, in seconds.
        silent_secs: u64,
        /// Seconds from the L1's start.
        seconds: f64,
        /// The L1 console log.
        log: PathBuf,
    },
    /// Something else the task checks went wrong.
    #[error("{0}")]
    Other(String),
}

impl XtaskError {
    /// A closure that wraps an I/O error with context and path.
    pub fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            context,
            path,
            source,
        }
    }
}

/// Result type of the xtask.
pub type Result<T> = std::result::Result<T, XtaskError>;
