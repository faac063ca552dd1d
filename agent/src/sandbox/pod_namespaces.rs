//! The pod's IPC and UTS namespaces, as Kata's agent keeps them: made once at
//! `CreateSandbox` (the UTS one named with the sandbox's hostname) and joined by every
//! container whose spec lists an `ipc` or `uts` namespace, so the containers of a pod
//! share System V IPC, POSIX message queues and the hostname.
//!
//! A short-lived thread of its own unshares both namespaces, sets the hostname in the new
//! UTS one and opens its `/proc/thread-self/ns/{ipc,uts}`; the thread then ends and the
//! open files keep the namespaces alive. Containers join them through
//! `/proc/<agent pid>/fd/<n>` (the helper opens namespace files while it still sees the
//! agent's `/proc`). Kata's agent bind-mounts them at `/run/sandbox-ns/{ipc,uts}`
//! instead; holding the files leaves nothing mounted to clean up after a crash.
//! `DestroySandbox` closes them ([`PodNamespaces`] dropped): each namespace ends with
//! its last process.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, unshare};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Why the pod's namespaces could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PodNamespaceError {
    /// A step on the namespaces' own thread failed.
    #[error("the pod's IPC and UTS namespaces: {step}: {source}")]
    Setup {
        /// `unshare`, `sethostname`, or the namespace file opened.
        step: String,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The thread that makes them could not be started or died.
    #[error("the pod's IPC and UTS namespaces: the thread making them {0}")]
    Thread(&'static str),
}

/// The pod's IPC and UTS namespaces, held open for as long as the sandbox lives.
#[derive(Debug)]
pub struct PodNamespaces {
    ipc: File,
    uts: File,
}

impl PodNamespaces {
    /// Makes a new IPC and a new UTS namespace, the latter with `hostname` (the guest's
    /// hostname when `None`: a new UTS namespace starts as a copy).
    pub fn create(hostname: Option<&str>) -> Result<Self, PodNamespaceError> {
        let hostname = hostname.map(str::to_owned);
        // A thread of its own: the namespaces change only for it, and it ends here.
        let thread = std::thread::Builder::new()
            .name("pod-namespaces".into())
            .spawn(move || -> Result<Self, PodNamespaceError> {
                let setup = |step: &str| {
                    let step = step.to_string();
                    move |source| PodNamespaceError::Setup { step, source }
                };
                unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
                    .map_err(|e| setup("unshare")(std::io::Error::from(e)))?;
                if let Some(hostname) = &hostname {
                    nix::unistd::sethostname(hostname)
                        .map_err(|e| setup("sethostname")(std::io::Error::from(e)))?;
                }
                let ipc = "/proc/thread-self/ns/ipc";
                let uts = "/proc/thread-self/ns/uts";
                Ok(Self {
                    ipc: File::open(ipc).map_err(setup(ipc))?,
                    uts: File::open(uts).map_err(setup(uts))?,
                })
            })
            .map_err(|_| PodNamespaceError::Thread("could not be started"))?;
        thread
            .join()
            .map_err(|_| PodNamespaceError::Thread("panicked"))?
    }

    /// The file a container's helper opens to join the namespace of `kind` (IPC or UTS).
    pub fn path(&self, kind: LinuxNamespaceType) -> Option<PathBuf> {
        let file = match kind {
            LinuxNamespaceType::Ipc => &self.ipc,
            LinuxNamespaceType::Uts => &self.uts,
            _ => return None,
        };
        Some(PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        )))
    }

    /// `spec` with each `ipc` and `uts` namespace it lists pointed at the pod's, as Kata's
    /// agent rewrites them (a path the spec gave is replaced); a spec that lists neither
    /// is left alone (its container shares the guest's).
    pub fn rewrite(&self, mut spec: Spec) -> Spec {
        let Some(mut linux) = spec.linux().clone() else {
            return spec;
        };
        let Some(mut namespaces) = linux.namespaces().clone() else {
            return spec;
        };
        for ns in &mut namespaces {
            if let Some(path) = self.path(ns.typ()) {
                ns.set_path(Some(path));
            }
        }
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ns_id(path: impl AsRef<std::path::Path>) -> (u64, u64) {
        let meta = std::fs::metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test makes namespaces: it needs root (CAP_SYS_ADMIN)"
        );
    }

    #[test]
    fn new_namespaces_apart_from_the_agents_with_the_hostname() {
        require_root();
        let pod = PodNamespaces::create(Some("pod-7")).unwrap();
        let ipc = pod.path(LinuxNamespaceType::Ipc).unwrap();
        let uts = pod.path(LinuxNamespaceType::Uts).unwrap();
        assert_ne!(ns_id(&ipc), ns_id("/proc/self/ns/ipc"));
        assert_ne!(ns_id(&uts), ns_id("/proc/self/ns/uts"));
        assert!(pod.path(LinuxNamespaceType::Pid).is_none());
        // The hostname is the new UTS namespace's, not this process's.
        let seen = std::thread::spawn(move || {
            let file = File::open(&uts).unwrap();
            nix::sched::setns(&file, CloneFlags::CLONE_NEWUTS).unwrap();
            nix::unistd::gethostname().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, "pod-7");
        assert_ne!(nix::unistd::gethostname().unwrap(), "pod-7");
    }

    #[test]
    fn listed_ipc_and_uts_are_pointed_at_the_pods_and_the_rest_kept() {
        require_root();
        let pod = PodNamespaces::create(None).unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [
                {"type": "ipc"},
                {"type": "uts", "path": "/proc/1/ns/uts"},
                {"type": "mount"},
            ]},
        }))
        .unwrap();
        let spec = pod.rewrite(spec);
        let paths: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .iter()
            .flatten()
            .map(|ns| (ns.typ(), ns.path().clone()))
            .collect();
        assert_eq!(
            paths,
            [
                (LinuxNamespaceType::Ipc, pod.path(LinuxNamespaceType::Ipc)),
                (LinuxNamespaceType::Uts, pod.path(LinuxNamespaceType::Uts)),
                (LinuxNamespaceType::Mount, None),
            ]
        );
        // Neither listed: nothing added.
        let bare: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "mount"}]},
        }))
        .unwrap();
        let kept = pod.rewrite(bare.clone());
        assert_eq!(kept, bare);
    }
}
