//! What the sandbox answers when a request fails: its own failures (a `CreateSandbox`
//! field it refuses, a state that forbids the request, a guest change that did not take),
//! and those of the layers it drives (containers, storages, devices, hooks), wrapped.
//!
//! The agent's `AgentError` holds this type whole (the sandbox knows nothing of it); the
//! RPC layer turns each variant into a ttRPC status code (`rpc/status.rs`).

use std::path::PathBuf;

use hull_container::ContainerError;
use hull_container::process::ProcessError;
use nix::errno::Errno;

use super::pod_namespaces::PodNamespaceError;
use super::shared_mounts::SharedMountError;
use crate::device::container::ContainerDeviceError;
use crate::diagnostic::DiagnosticError;
use crate::hooks::HookError;
use crate::stdio_ports::StdioPortError;
use crate::storage::StorageError;

/// Everything a [`Sandbox`](super::Sandbox) request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    // CreateSandbox's fields.
    /// The hostname is not one the kernel takes.
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname {
        /// The hostname asked for.
        hostname: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A resolv.conf line is unsafe to write.
    #[error("invalid DNS line {line:?}: {reason}")]
    InvalidDns {
        /// The line as the host sent it.
        line: String,
        /// What makes it unsafe.
        reason: &'static str,
    },
    /// The guest hook directory is not an absolute, `..`-free path.
    #[error("invalid guest hook path {path:?}: {reason}")]
    InvalidHookPath {
        /// The path as the host sent it.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Kernel modules were asked for; the guest kernel has no module support.
    #[error(
        "this guest cannot load kernel modules (its kernel is built without module support); asked for: {names}"
    )]
    KernelModules {
        /// The modules asked for, comma-separated.
        names: String,
    },

    // The sandbox's state.
    /// `CreateSandbox` a second time.
    #[error("the sandbox {id:?} already exists; CreateSandbox is called once per sandbox")]
    SandboxExists {
        /// The existing sandbox's id.
        id: String,
    },
    /// `CreateContainer` after the agent was restarted, before a new `CreateSandbox`.
    #[error(
        "no sandbox: the previous agent died and its sandbox was torn down; call CreateSandbox first"
    )]
    SandboxLost,
    /// A request that creates something after `DestroySandbox`.
    #[error("the sandbox is being destroyed")]
    SandboxDestroyed,
    /// `DestroySandbox` a second time.
    #[error("the sandbox is already being destroyed")]
    AlreadyDestroying,
    /// A container asks for the sandbox PID namespace that `CreateSandbox` did not ask for.
    #[error(
        "CreateContainer asks for the sandbox pid namespace (sandbox_pidns), but CreateSandbox did not ask for one"
    )]
    NoSandboxPidns,
    /// The container holding the sandbox PID namespace has ended, and the namespace with it.
    #[error("the sandbox pid namespace ended with container {holder}'s init")]
    SandboxPidnsEnded {
        /// The id of the container whose init held the namespace.
        holder: String,
    },
    /// The container's spec could not be pointed at the sandbox PID namespace.
    #[error("{0}")]
    PidNamespace(#[source] oci_spec::OciSpecError),

    // Carrying a request out.
    /// `sethostname` failed.
    #[error("setting the hostname to {hostname:?}: {errno}")]
    Hostname {
        /// The hostname asked for.
        hostname: String,
        /// `sethostname`'s error.
        errno: Errno,
    },
    /// The sandbox's resolv.conf could not be put in place or taken away.
    #[error("installing DNS on {target}: {reason}")]
    Dns {
        /// The resolv.conf being bind-mounted over or unmounted (normally
        /// `/etc/resolv.conf`).
        target: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A sysfs file does not hold what the kernel writes there.
    #[error("{path}: expected a hexadecimal size, found {found:?}")]
    BadSysfsValue {
        /// The sysfs file read.
        path: PathBuf,
        /// Its contents, trimmed.
        found: String,
    },
    /// Reading or writing a guest file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A path's filesystem does not answer (a virtio-fs share whose virtiofsd is gone).
    #[error(
        "{path} did not answer within {timeout:?}: the filesystem it is on does not respond \
         (a shared filesystem whose server on the host is gone?)"
    )]
    Unresponsive {
        /// The path asked about.
        path: PathBuf,
        /// How long it was given.
        timeout: std::time::Duration,
    },

    // The layers the sandbox drives.
    /// A container or process operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A container's devices (`CreateContainer`'s `devices`) could not be given to it.
    #[error(transparent)]
    Devices(#[from] ContainerDeviceError),
    /// A mount shared from another container (`shared_mounts`) could not be made.
    #[error(transparent)]
    SharedMount(#[from] SharedMountError),
    /// The pod's IPC and UTS namespaces could not be made (`CreateSandbox`).
    #[error(transparent)]
    PodNamespaces(#[from] PodNamespaceError),
    /// A storage could not be set up or taken down.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A guest hook or a spec hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The termination log could not be read (`GetDiagnosticData`).
    #[error(transparent)]
    Diagnostic(#[from] DiagnosticError),
    /// A request's stdio ports could not be served.
    #[error(transparent)]
    StdioPort(#[from] StdioPortError),
}

impl From<ProcessError> for SandboxError {
    fn from(error: ProcessError) -> Self {
        Self::Container(error.into())
    }
}

impl SandboxError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
