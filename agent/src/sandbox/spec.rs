//! What `CreateSandbox` asks of the guest: storages, the hostname, DNS, and facts
//! recorded for containers (the sandbox-wide PID namespace, the guest hook directory).
//!
//! A [`SandboxRequest`] is the request as the host sent it (the RPC layer's translation
//! of `CreateSandboxRequest`); [`SandboxSpec::check`] checks every field, storages
//! included, before anything is changed.

use std::path::{Path, PathBuf};

use super::SandboxError;
use super::dns::check_dns;
use super::hostname::check_hostname;
use crate::storage::{StorageRequest, StorageSpec, Storages};

/// `CreateSandbox` as the host asked for it, unchecked. Empty strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxRequest {
    /// The sandbox's id.
    pub id: String,
    /// The hostname to set.
    pub hostname: String,
    /// `resolv.conf` lines.
    pub dns: Vec<String>,
    /// Storages the sandbox itself holds (shared volumes, the virtio-fs share), mounted
    /// before anything else.
    pub storages: Vec<StorageRequest>,
    /// Whether containers asking for it share one sandbox-wide PID namespace.
    pub sandbox_pidns: bool,
    /// The guest directory holding guest hooks (`prestart/`, `poststart/`,
    /// `poststop/`).
    pub guest_hook_path: String,
    /// Names of kernel modules to load.
    pub kernel_modules: Vec<String>,
}

/// A checked [`SandboxRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The sandbox's id.
    pub id: String,
    /// `None`: keep the guest's hostname.
    pub hostname: Option<String>,
    /// `resolv.conf` lines; empty: keep the guest's.
    pub dns: Vec<String>,
    /// The sandbox's storages, checked.
    pub storages: Vec<StorageSpec>,
    /// Whether containers asking for it share one sandbox-wide PID namespace.
    pub sandbox_pidns: bool,
    /// `None`: no guest hooks.
    pub guest_hook_path: Option<PathBuf>,
}

impl SandboxSpec {
    /// Checks every field, storages included (against `storages`), before anything is
    /// changed.
    pub fn check(req: &SandboxRequest, storages: &Storages) -> Result<Self, SandboxError> {
        if !req.kernel_modules.is_empty() {
            return Err(SandboxError::KernelModules {
                names: req.kernel_modules.join(", "),
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
            id: req.id.clone(),
            hostname,
            dns,
            storages,
            sandbox_pidns: req.sandbox_pidns,
            guest_hook_path,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceWaiter;
    use std::time::Duration;

    fn storages() -> Storages {
        Storages::new(
            "/run/kata-containers",
            DeviceWaiter::guest(Duration::from_secs(1)),
        )
    }

    fn parse(req: &SandboxRequest) -> Result<SandboxSpec, SandboxError> {
        SandboxSpec::check(req, &storages())
    }

    #[test]
    fn a_full_request_is_checked_and_kept() {
        let req = SandboxRequest {
            hostname: "pod-1".into(),
            dns: vec![
                " nameserver 10.0.0.1 ".into(),
                "".into(),
                "search svc.cluster.local".into(),
            ],
            storages: vec![StorageRequest {
                driver: "virtio-fs".into(),
                source: "kataShared".into(),
                fstype: "virtiofs".into(),
                mount_point: "/run/kata-containers/shared/containers/".into(),
                ..Default::default()
            }],
            sandbox_pidns: true,
            id: "sb-1".into(),
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
        let empty = parse(&SandboxRequest::default()).unwrap();
        assert_eq!(empty.hostname, None);
        assert!(empty.dns.is_empty() && empty.guest_hook_path.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(SandboxRequest, &str)> = vec![
            (
                SandboxRequest {
                    hostname: "x".repeat(65),
                    ..Default::default()
                },
                "64 bytes",
            ),
            (
                SandboxRequest {
                    hostname: "a b".into(),
                    ..Default::default()
                },
                "hostname",
            ),
            (
                SandboxRequest {
                    dns: vec!["nameserver 1.1.1.1\nnameserver 6.6.6.6".into()],
                    ..Default::default()
                },
                "line break",
            ),
            (
                SandboxRequest {
                    guest_hook_path: "hooks".into(),
                    ..Default::default()
                },
                "absolute",
            ),
            (
                SandboxRequest {
                    guest_hook_path: "/a/../b".into(),
                    ..Default::default()
                },
                "'..'",
            ),
            (
                SandboxRequest {
                    kernel_modules: vec!["e1000".into()],
                    ..Default::default()
                },
                "e1000",
            ),
            (
                SandboxRequest {
                    storages: vec![StorageRequest {
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
