//! Debian packages: version lookup, download and extraction with
//! `apt-cache`, `apt-get download` and `dpkg-deb -x`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Result, XtaskError};

const APT_HINT: &str = "this task needs a Debian or Ubuntu host with apt-get, apt-cache and dpkg-deb \
     (package `apt` and `dpkg`)";

/// Checks that the apt tools are present.
pub fn require_apt() -> Result<()> {
    for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
        cmd::require(tool, APT_HINT)?;
    }
    Ok(())
}

/// Parses the `Candidate:` line of `apt-cache policy` output.
pub fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

/// Parses the first `Depends:` target of `apt-cache depends` output that
/// starts with `prefix`.
pub fn parse_depends(depends: &str, prefix: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|d| d.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|d| d.starts_with(prefix))
        .map(str::to_owned)
}

fn policy(package: &str) -> Result<Option<String>> {
    let text = cmd::output(Command::new("apt-cache").args(["policy", package]))?;
    Ok(parse_candidate(&text))
}

/// The candidate version of `package`, running `apt-get update` once if apt
/// does not know it yet.
pub fn candidate_version(package: &str, install_hint: &str) -> Result<String> {
    if let Some(version) = policy(package)? {
        return Ok(version);
    }
    eprintln!("xtask: apt does not know {package}; running apt-get update");
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    policy(package)?.ok_or_else(|| XtaskError::MissingPackage {
        package: package.to_owned(),
        hint: install_hint.to_owned(),
    })
}

/// The concrete package a metapackage depends on (the first dependency
/// starting with `prefix`), for the candidate version.
pub fn resolve_meta(meta: &str, prefix: &str, hint: &str) -> Result<String> {
    candidate_version(meta, hint)?;
    let text = cmd::output(Command::new("apt-cache").args(["depends", meta]))?;
    parse_depends(&text, prefix).ok_or_else(|| XtaskError::MissingPackage {
        package: format!("{prefix}* (a dependency of {meta})"),
        hint: hint.to_owned(),
    })
}

/// Downloads `package=version` into `dir` and returns the `.deb` path.
pub fn download(package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
    cmd::mkdir(dir)?;
    cmd::output(Command::new("apt-get").current_dir(dir).args([
        "download",
        "-q",
        &format!("{package}={version}"),
    ]))?;
    let entries = std::fs::read_dir(dir).map_err(XtaskError::io("read directory", dir))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| {
            XtaskError::Other(format!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            ))
        })
}

/// Extracts a `.deb` into `dir` with `dpkg-deb -x`.
pub fn extract(deb: &Path, dir: &Path) -> Result<()> {
    cmd::mkdir(dir)?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir))
}

/// Installs packages (each may be `name=version`) with `apt-get install -y
/// --no-install-recommends --allow-downgrades`, so that a pinned version may
/// move an installed package back; runs `apt-get update` and tries again if
/// the first install fails (for lack of package lists, say).
pub fn install_allowing_downgrades(packages: &[&str]) -> Result<()> {
    require_apt()?;
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    let attempt = || {
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .arg("--allow-downgrades")
                .args(packages),
        )
    };
    if attempt().is_ok() {
        return Ok(());
    }
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    attempt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache_output() {
        let policy = "busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n";
        assert_eq!(
            parse_candidate(policy).as_deref(),
            Some("1:1.35.0-4+deb12u1+b1")
        );
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
        assert_eq!(parse_candidate(""), None);
        let depends = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n  Depends: <linux-image-6.1.0-47-cloud-amd64>\n";
        assert_eq!(
            parse_depends(depends, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-48-cloud-amd64")
        );
        assert_eq!(parse_depends(depends, "busybox"), None);
    }
}
