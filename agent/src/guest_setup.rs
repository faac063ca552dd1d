//! What `CreateSandbox` asks of the guest besides storages: the hostname, DNS, and facts
//! recorded for containers (the sandbox-wide PID namespace, the guest hook directory).
//!
//! DNS works on any root: the lines are written to `<run dir>/sandbox/resolv.conf`
//! (Kata's path) and that file is bind-mounted over `/etc/resolv.conf`, which therefore
//! must exist. On a writable root (an initramfs) a missing one is created first; on a
//! read-only root image it must be part of the image.

use std::path::{Path, PathBuf};

use hull_protocols::agent::CreateSandboxRequest;
use nix::errno::Errno;

use crate::error::AgentError;
use crate::fs::{ConfineError, ConfinedRoot, Scope};
use crate::storage::{StorageSpec, Storages};

/// The guest's resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where the sandbox's DNS lines are kept, beneath the agent's directory.
pub const SANDBOX_RESOLV_CONF: &str = "sandbox/resolv.conf";
/// `HOST_NAME_MAX`.
const HOSTNAME_MAX: usize = 64;
/// More than any resolv.conf needs.
const DNS_MAX_LINES: usize = 256;
const DNS_MAX_LINE: usize = 1024;

/// Why the sandbox could not be created (storage errors aside).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox {id:?} already exists; CreateSandbox is called once per sandbox")]
    AlreadyCreated { id: String },
    #[error("the sandbox is being destroyed")]
    Destroyed,
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname {
        hostname: String,
        reason: &'static str,
    },
    #[error("invalid DNS line {line:?}: {reason}")]
    InvalidDns { line: String, reason: &'static str },
    #[error("invalid guest hook path {path:?}: {reason}")]
    InvalidHookPath { path: String, reason: &'static str },
    #[error(
        "this guest cannot load kernel modules (its kernel is built without module support); asked for: {names}"
    )]
    KernelModules { names: String },
    #[error("setting the hostname to {hostname:?}: {errno}")]
    Hostname { hostname: String, errno: Errno },
    #[error("installing DNS on {target}: {reason}")]
    Dns { target: PathBuf, reason: String },
}

/// A checked `CreateSandboxRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub id: String,
    /// `None`: keep the guest's hostname.
    pub hostname: Option<String>,
    /// `resolv.conf` lines; empty: keep the guest's.
    pub dns: Vec<String>,
    pub storages: Vec<StorageSpec>,
    pub sandbox_pidns: bool,
    /// `None`: no guest hooks.
    pub guest_hook_path: Option<PathBuf>,
}

impl SandboxSpec {
    /// Checks every field, storages included, before anything is changed.
    pub fn from_proto(req: &CreateSandboxRequest, storages: &Storages) -> Result<Self, AgentError> {
        if !req.kernel_modules.is_empty() {
            let names: Vec<&str> = req.kernel_modules.iter().map(|m| m.name.as_str()).collect();
            return Err(SandboxError::KernelModules {
                names: names.join(", "),
            }
            .into());
        }
        let hostname = (!req.hostname.is_empty())
            .then(|| check_hostname(&req.hostname).map(|()| req.hostname.clone()))
            .transpose()?;
        let dns = check_dns(&req.dns)?;
        let guest_hook_path = (!req.guest_hook_path.is_empty())
            .then(|| check_hook_path(&req.guest_hook_path))
            .transpose()?;
        let storages = req
            .storages
            .iter()
            .map(|s| storages.parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            id: req.sandbox_id.clone(),
            hostname,
            dns,
            storages,
            sandbox_pidns: req.sandbox_pidns,
            guest_hook_path,
        })
    }
}

fn check_hostname(hostname: &str) -> Result<(), SandboxError> {
    let invalid = |reason| SandboxError::InvalidHostname {
        hostname: hostname.to_string(),
        reason,
    };
    if hostname.len() > HOSTNAME_MAX {
        return Err(invalid("longer than 64 bytes"));
    }
    if hostname
        .bytes()
        .any(|b| b == 0 || b.is_ascii_whitespace() || b == b'/')
    {
        return Err(invalid("contains a NUL, a blank or a '/'"));
    }
    Ok(())
}

fn check_dns(lines: &[String]) -> Result<Vec<String>, SandboxError> {
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

fn check_hook_path(path: &str) -> Result<PathBuf, SandboxError> {
    let invalid = |reason| SandboxError::InvalidHookPath {
        path: path.to_string(),
        reason,
    };
    let as_path = Path::new(path);
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if !as_path.is_absolute() {
        return Err(invalid("must be absolute"));
    }
    if as_path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(invalid("'..' is not allowed"));
    }
    Ok(as_path.to_path_buf())
}

/// Sets the guest's hostname (of the agent's UTS namespace).
pub fn set_hostname(hostname: &str) -> Result<(), SandboxError> {
    nix::unistd::sethostname(hostname).map_err(|errno| SandboxError::Hostname {
        hostname: hostname.to_string(),
        errno,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceWaiter;
    use hull_protocols::agent::{KernelModule, Storage};
    use std::time::Duration;

    fn storages() -> Storages {
        Storages::new(
            "/run/kata-containers",
            DeviceWaiter::guest(Duration::from_secs(1)),
        )
    }

    fn parse(req: &CreateSandboxRequest) -> Result<SandboxSpec, AgentError> {
        SandboxSpec::from_proto(req, &storages())
    }

    #[test]
    fn a_full_request_is_checked_and_kept() {
        let req = CreateSandboxRequest {
            hostname: "pod-1".into(),
            dns: vec![
                " nameserver 10.0.0.1 ".into(),
                "".into(),
                "search svc.cluster.local".into(),
            ],
            storages: vec![Storage {
                driver: "virtio-fs".into(),
                source: "kataShared".into(),
                fstype: "virtiofs".into(),
                mount_point: "/run/kata-containers/shared/containers/".into(),
                ..Default::default()
            }],
            sandbox_pidns: true,
            sandbox_id: "sb-1".into(),
            guest_hook_path: "/usr/share/oci/hooks".into(),
            ..Default::default()
        };
        let spec = parse(&req).unwrap();
        assert_eq!(spec.id, "sb-1");
        assert_eq!(spec.hostname.as_deref(), Some("pod-1"));
        assert_eq!(
            spec.dns,
            vec!["nameserver 10.0.0.1", "search svc.cluster.local"]
        );
        assert_eq!(spec.storages.len(), 1);
        assert!(spec.sandbox_pidns);
        assert_eq!(
            spec.guest_hook_path.as_deref(),
            Some(Path::new("/usr/share/oci/hooks"))
        );
        let empty = parse(&CreateSandboxRequest::default()).unwrap();
        assert_eq!(empty.hostname, None);
        assert!(empty.dns.is_empty() && empty.guest_hook_path.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(CreateSandboxRequest, &str)> = vec![
            (
                CreateSandboxRequest {
                    hostname: "x".repeat(65),
                    ..Default::default()
                },
                "64 bytes",
            ),
            (
                CreateSandboxRequest {
                    hostname: "a b".into(),
                    ..Default::default()
                },
                "hostname",
            ),
            (
                CreateSandboxRequest {
                    dns: vec!["nameserver 1.1.1.1\nnameserver 6.6.6.6".into()],
                    ..Default::default()
                },
                "line break",
            ),
            (
                CreateSandboxRequest {
                    guest_hook_path: "hooks".into(),
                    ..Default::default()
                },
                "absolute",
            ),
            (
                CreateSandboxRequest {
                    guest_hook_path: "/a/../b".into(),
                    ..Default::default()
                },
                "'..'",
            ),
            (
                CreateSandboxRequest {
                    kernel_modules: vec![KernelModule {
                        name: "e1000".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                "e1000",
            ),
            (
                CreateSandboxRequest {
                    storages: vec![Storage {
                        driver: "nfs".into(),
                        mount_point: "/run/kata-containers/x".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                "unsupported storage driver \"nfs\"",
            ),
        ];
        for (req, needle) in cases {
            let err = parse(&req).unwrap_err();
            assert!(err.to_string().contains(needle), "{req:?}: {err}");
        }
    }
}
