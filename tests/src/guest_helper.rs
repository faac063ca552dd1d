//! C programs the harness builds with the host's C compiler, and `guest-helper`
//! (`tests/baseline/guest-helper.c`), which a container runs to reach the guest without
//! the agent in the way: raw vsock writes, fork+exec timing, and the host ports of vsock
//! connections as the guest sees them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;

use crate::artifacts::workspace_root;

/// Compiles one C file with `cc` and `flags` into `out`.
pub fn compile_c(source: &Path, out: &Path, flags: &[&str]) -> Result<()> {
    let output = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(source)
        .output()
        .context("running cc (install gcc: `just setup` installs the kernel's build tools)")?;
    ensure!(
        output.status.success(),
        "cc {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Builds `guest-helper` (static) into `dir`.
pub fn build_guest_helper(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("guest-helper");
    compile_c(
        &workspace_root().join("tests/baseline/guest-helper.c"),
        &out,
        &["-static", "-O2", "-s"],
    )?;
    Ok(out)
}

/// `guest-helper` built into a directory of its own, removed with this value.
pub struct GuestHelper {
    /// The static binary.
    pub path: PathBuf,
    _dir: TempDir,
}

impl GuestHelper {
    /// Builds it.
    pub fn build() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hull-guest-helper-")
            .tempdir()
            .context("creating the guest-helper directory")?;
        Ok(Self {
            path: build_guest_helper(dir.path())?,
            _dir: dir,
        })
    }
}
