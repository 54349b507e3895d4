//! The simulated guest's serial console: a few lines at boot and at exit,
//! sent where the config's [`ConsoleSink`] says.

use std::fs::OpenOptions;
use std::io::Write;

use uvm_api::{ConsoleSink, Error, ExitStatus, Result, StopReason, UvmConfig};

/// What the simulated guest prints while it boots.
pub(crate) fn boot_lines(config: &UvmConfig) -> Vec<String> {
    let mut lines = vec![format!(
        "mock guest {}: {} vCPU(s), {} MiB",
        config.id, config.vcpus, config.memory_mib
    )];
    if let Some(kernel) = &config.kernel {
        lines.push(format!("booting kernel {}", kernel.display()));
    }
    if !config.cmdline.is_empty() {
        lines.push(format!("command line: {}", config.cmdline));
    }
    lines.push("guest ready".to_owned());
    lines
}

/// Sends `lines` to `sink`. An unwritable console file fails the boot.
pub(crate) fn write(sink: &ConsoleSink, id: &str, lines: &[String]) -> Result<()> {
    match sink {
        ConsoleSink::Discard => Ok(()),
        ConsoleSink::Log => {
            for line in lines {
                tracing::info!(target: "uvm::console", vm = id, "{line}");
            }
            Ok(())
        }
        ConsoleSink::File(path) => {
            let mut text = lines.join("\n");
            text.push('\n');
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| Error::io(format!("writing console {}", path.display()), e))
        }
    }
}

/// The guest's last words, best effort: the VM has stopped whatever happens here.
pub(crate) fn write_exit(sink: &ConsoleSink, id: &str, status: &ExitStatus) {
    let line = match status.reason {
        StopReason::Shutdown => "reboot: Power down",
        StopReason::Reboot => "reboot: Restarting system",
        StopReason::GuestPanic => "Kernel panic - not syncing: simulated",
        StopReason::Crash => "triple fault",
        _ => return,
    };
    if let Err(e) = write(sink, id, &[line.to_owned()]) {
        tracing::warn!(vm = id, error = %e, "console write failed");
    }
}
