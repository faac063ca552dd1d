//! The agent's one error type. [`crate::rpc`] maps it to ttRPC status codes, in one place.

use std::path::PathBuf;

use crate::network::NetworkError;

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
    /// A container or process operation failed.
    #[error(transparent)]
    Container(#[from] hull_container::ContainerError),
    /// A storage could not be set up or taken down.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// CreateSandbox could not set the guest up.
    #[error(transparent)]
    Sandbox(#[from] crate::guest_setup::SandboxError),
    /// Reading or writing a guest file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Configuring the guest's network failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A guest hook (CreateSandbox's `guest_hook_path`) failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
}

impl From<crate::fs::ConfineError> for AgentError {
    fn from(error: crate::fs::ConfineError) -> Self {
        Self::Storage(error.into())
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
