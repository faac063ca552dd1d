//! The agent's one error type below the RPC layer.
//!
//! The request's own faults are variants that say what went wrong; the sandbox
//! ([`SandboxError`]) and the layers below (containers, storages, the network, guest
//! hooks) keep their own error types, wrapped here. The RPC layer turns each variant
//! into a ttRPC status code, in one place (`rpc/status.rs`); this module knows nothing
//! of ttRPC.

use hull_container::ContainerError;
use hull_container::process::ProcessError;

use crate::device::cpu_mem::CpuMemError;
use crate::diagnostic::DiagnosticError;
use crate::entropy::EntropyError;
use crate::fs::ConfineError;
use crate::fs::copy::CopyFileError;
use crate::guest_clock::ClockError;
use crate::iptables::IptablesError;
use crate::mem_agent::MemAgentError;
use crate::network::NetworkError;
use crate::policy::PolicyError;
use crate::sandbox::SandboxError;
use crate::storage::StorageError;
use crate::swap::SwapError;

/// Everything that can go wrong below the RPC layer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    // The request itself.
    /// A field the method needs is absent.
    #[error("the request has no {field}")]
    MissingField {
        /// The field's name, as the error message shows it.
        field: &'static str,
    },
    /// A field holds a value this agent cannot use.
    #[error("{field}: {reason}")]
    InvalidRequest {
        /// The field's name.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The request asks for something this agent does not do.
    #[error("{what} is not supported")]
    Unsupported {
        /// The feature asked for, in words.
        what: &'static str,
    },
    /// `StringUser` names a user or group: this agent does not read the container's
    /// `/etc/passwd`.
    #[error("string_user {field} {value:?}: only numeric ids are supported")]
    UserName {
        /// Which id: `uid`, `gid` or `additional gid`.
        field: &'static str,
        /// The non-numeric value given.
        value: String,
    },

    // The layers below.
    /// The sandbox refused or failed a request (its own state, `CreateSandbox`'s fields,
    /// or a layer it drives).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A container or process value the request gives is refused (a signal number).
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A storage could not be set up or taken down.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Configuring the guest's network failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Swap could not be added (`AddSwap`, `AddSwapPath`).
    #[error(transparent)]
    Swap(#[from] SwapError),
    /// `CopyFile` was refused or failed.
    #[error(transparent)]
    CopyFile(#[from] CopyFileError),
    /// `SetGuestDateTime` was refused or failed.
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// `ReseedRandomDev` was refused or failed.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// Onlining hot-plugged vCPUs or memory, or probing memory, failed.
    #[error(transparent)]
    CpuMem(#[from] CpuMemError),
    /// The memory agent's configuration was refused.
    #[error(transparent)]
    MemAgent(#[from] MemAgentError),
    /// GetDiagnosticData could not answer.
    #[error(transparent)]
    Diagnostic(#[from] DiagnosticError),
    /// GetIPTables / SetIPTables failed.
    #[error(transparent)]
    Iptables(#[from] IptablesError),
    /// The agent policy refused the request, or a new policy was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
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
