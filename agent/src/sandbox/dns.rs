//! The sandbox's DNS configuration.
//!
//! DNS works on any root: the lines are written to `<run dir>/sandbox/resolv.conf`
//! (Kata's path) and that file is bind-mounted over `/etc/resolv.conf`, which therefore
//! must exist. On a writable root (an initramfs) a missing one is created first; on a
//! read-only root image it must be part of the image.

use std::path::Path;

use nix::errno::Errno;

use super::SandboxError;
use crate::fs::{ConfineError, ConfinedRoot, Scope};

/// The guest's resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where the sandbox's DNS lines are kept, beneath the agent's directory.
pub const SANDBOX_RESOLV_CONF: &str = "sandbox/resolv.conf";
/// More than any resolv.conf needs.
const DNS_MAX_LINES: usize = 256;
const DNS_MAX_LINE: usize = 1024;

/// Checks resolv.conf lines; answers them trimmed, blank ones dropped.
pub fn check_dns(lines: &[String]) -> Result<Vec<String>, SandboxError> {
    if lines.len() > DNS_MAX_LINES {
        return Err(SandboxError::InvalidDns {
            line: format!("({} lines)", lines.len()),
            reason: "more than 256 lines",
        });
    }
    lines
        .iter()
        .map(|line| {
            let invalid = |reason| SandboxError::InvalidDns {
                line: line.clone(),
                reason,
            };
            let trimmed = line.trim();
            if trimmed.contains(['\n', '\r', '\0']) {
                return Err(invalid("a line may not contain a line break or a NUL"));
            }
            if trimmed.len() > DNS_MAX_LINE {
                return Err(invalid("longer than 1024 bytes"));
            }
            Ok(trimmed.to_string())
        })
        .filter(|line| !matches!(line, Ok(l) if l.is_empty()))
        .collect()
}

/// Writes `lines` to the sandbox's resolv.conf beneath `run_root` and bind-mounts it on
/// `resolv_conf` (normally [`RESOLV_CONF`]), creating that file if it is missing and the
/// root is writable.
pub fn install_dns(
    run_root: &ConfinedRoot,
    lines: &[String],
    resolv_conf: &Path,
) -> Result<(), SandboxError> {
    let dns_error = |reason: String| SandboxError::Dns {
        target: resolv_conf.to_path_buf(),
        reason,
    };
    let mut content = lines.join("\n");
    content.push('\n');
    let source = run_root
        .write_file(
            &run_root.path().join(SANDBOX_RESOLV_CONF),
            content.as_bytes(),
            0o644,
        )
        .map_err(|e| dns_error(e.to_string()))?;
    let system = ConfinedRoot::open("/", Scope::InRoot).map_err(|e| dns_error(e.to_string()))?;
    let target =
        system.create_file(resolv_conf, 0o644).map_err(|e| {
            match e {
            ConfineError::Os {
                errno: Errno::EROFS,
                ..
            } => dns_error(
                "it does not exist and the root file system is read-only: the image must provide it"
                    .into(),
            ),
            other => dns_error(other.to_string()),
        }
        })?;
    if target.is_dir() {
        return Err(dns_error("it is a directory".into()));
    }
    crate::mount::bind_mount(&system, resolv_conf, &source, false, false)
        .map_err(|e| dns_error(e.to_string()))?;
    tracing::info!(lines = lines.len(), "DNS installed");
    Ok(())
}

/// Undoes [`install_dns`]'s bind mount.
pub fn remove_dns(resolv_conf: &Path) -> Result<(), SandboxError> {
    let dns_error = |reason: String| SandboxError::Dns {
        target: resolv_conf.to_path_buf(),
        reason,
    };
    let system = ConfinedRoot::open("/", Scope::InRoot).map_err(|e| dns_error(e.to_string()))?;
    crate::mount::unmount(&system, resolv_conf).map_err(|e| dns_error(e.to_string()))
}
