//! `cargo xtask`: project tasks that need more than cargo.
//!
//! - `cargo xtask guest [--json]`: build (or reuse) the test guest's kernel
//!   and initramfs from Debian packages; prints their paths and versions.
//! - `cargo xtask lab [options] -- <program> [args]`: run a program of this
//!   workspace (built static) where `/dev/kvm` can boot Linux: directly on a
//!   VMX/SVM host, else in a nested QEMU TCG guest with emulated SVM.
//! - `cargo xtask lab --print-mode`: say which of the two it would use and why.
//! - `cargo xtask circles [CRATE_DIR ...]`: list the import circles between
//!   the files of each crate ([`circles`]); exits 1 when there is one.

mod apt;
mod build;
mod cache;
mod circles;
mod cmd;
mod cpio;
mod error;
mod guest;
mod initramfs;
mod l1_console;
mod l1_serial;
mod lab;
mod lockup;
mod modules;
mod qemu_bundle;
mod vmlinux;

use std::process::ExitCode;

/// The usage text.
pub const USAGE: &str = "usage:
  cargo xtask guest [--json]
      build or reuse the guest kernel + initramfs (cache: $UVM_CACHE_DIR or ~/.cache/uvm)
  cargo xtask lab [--print-mode] [--nested] [--timeout SECS] [--memory MIB] [--cpus N]
                  [--scratch-gib N] [--with-vmlinux] [--with-qemu] [--with-binary PATH]... [--verbose]
                  [--lockup-retries N] [--silence-timeout SECS] -- <program|path> [args]
      run a workspace binary (built static) where /dev/kvm can boot Linux
  cargo xtask circles [CRATE_DIR ...]
      list the import circles between the files of each crate (exit 1 if any)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("guest") => guest::run(&args[1..]).map(|()| 0),
        Some("lab") => lab::run(&args[1..]),
        Some("circles") => circles::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(0)
        }
        Some(other) => Err(error::XtaskError::Usage(format!("unknown task {other:?}"))),
        None => Err(error::XtaskError::Usage("no task given".into())),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}
