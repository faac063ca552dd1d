//! The agent's one error type below the RPC layer.
//!
//! The sandbox's own failures are variants that say what went wrong; the layers below
//! (containers, storages, the network, guest hooks) keep their own error types, wrapped
//! here. The RPC layer turns each variant into a ttRPC status code, in one place
//! (`rpc::status`); this module knows nothing of ttRPC.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::container::ContainerError;
use crate::fs::ConfineError;
use crate::hooks::HookError;
use crate::network::NetworkError;
use crate::process::ProcessError;
use crate::storage::StorageError;

/// Everything that can go wrong below the RPC layer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed or unacceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but the guest is not in a state to carry it out.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request would create something that exists already.
    #[error("{0}")]
    AlreadyExists(String),

    // CreateSandbox's fields.
    /// The hostname is not one the kernel takes.
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname {
        hostname: String,
        reason: &'static str,
    },
    /// A resolv.conf line is unsafe to write.
    #[error("invalid DNS line {line:?}: {reason}")]
    InvalidDns { line: String, reason: &'static str },
    /// The guest hook directory is not an absolute, `..`-free path.
    #[error("invalid guest hook path {path:?}: {reason}")]
    InvalidHookPath { path: String, reason: &'static str },
    /// Kernel modules were asked for; the guest kernel has no module support.
    #[error(
        "this guest cannot load kernel modules (its kernel is built without module support); asked for: {names}"
    )]
    KernelModules { names: String },

    // The sandbox's state.
    /// `CreateSandbox` a second time.
    #[error("the sandbox {id:?} already exists; CreateSandbox is called once per sandbox")]
    SandboxExists { id: String },
    /// A request that creates something after `DestroySandbox`.
    #[error("the sandbox is being destroyed")]
    SandboxDestroyed,

    // Carrying a request out.
    /// `sethostname` failed.
    #[error("setting the hostname to {hostname:?}: {errno}")]
    Hostname { hostname: String, errno: Errno },
    /// The sandbox's resolv.conf could not be put in place or taken away.
    #[error("installing DNS on {target}: {reason}")]
    Dns { target: PathBuf, reason: String },
    /// Reading or writing a guest file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    // The layers below.
    /// A container or process operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A storage could not be set up or taken down.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Configuring the guest's network failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A guest hook (CreateSandbox's `guest_hook_path`) failed.
    #[error(transparent)]
    Hook(#[from] HookError),
}

impl From<ConfineError> for AgentError {
    fn from(error: ConfineError) -> Self {
        Self::Storage(error.into())
    }
}

impl From<ProcessError> for AgentError {
    fn from(error: ProcessError) -> Self {
        Self::Container(error.into())
    }
}

impl AgentError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
