//! What `CreateSandbox` asks of the guest: storages, the hostname, DNS, and facts
//! recorded for containers (the sandbox-wide PID namespace, the guest hook directory).

use std::path::{Path, PathBuf};

use hull_protocols::agent::CreateSandboxRequest;

use super::dns::check_dns;
use super::hostname::check_hostname;
use crate::error::AgentError;
use crate::storage::{StorageSpec, Storages};

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
            return Err(AgentError::KernelModules {
                names: names.join(", "),
            });
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

fn check_hook_path(path: &str) -> Result<PathBuf, AgentError> {
    let invalid = |reason| AgentError::InvalidHookPath {
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
