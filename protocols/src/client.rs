//! A typed host-side client of the agent.
//!
//! [`AgentClient`] dials the agent (see [`crate::dial`]) and has one method for every
//! RPC of the `AgentService` and `Health` services, grouped by area:
//!
//! | module | RPCs |
//! | --- | --- |
//! | `sandbox` | CreateSandbox, DestroySandbox, GetGuestDetails, SetPolicy, OnlineCPUMem, ReseedRandomDev, MemHotplugByProbe, SetGuestDateTime, AddSwap, AddSwapPath, MemAgentMemcgSet, MemAgentCompactSet |
//! | `container` | CreateContainer, StartContainer, RemoveContainer, UpdateContainer, StatsContainer, PauseContainer, ResumeContainer, GetOOMEvent |
//! | `process` | ExecProcess, SignalProcess, WaitProcess, ReadStdout, ReadStderr, WriteStdin, CloseStdin, TtyWinResize, and [`AgentClient::read_to_end`] |
//! | `network` | UpdateInterface, UpdateRoutes, ListInterfaces, ListRoutes, AddARPNeighbors, GetIPTables, SetIPTables |
//! | `storage` | UpdateEphemeralMounts, RemoveStaleVirtiofsShareMounts, GetVolumeStats, ResizeVolume, CopyFile |
//! | `misc` | Health.Check, Health.Version, GetMetrics, GetDiagnosticData |
//!
//! Every call carries the client's per-call timeout ([`DEFAULT_CALL_TIMEOUT`] unless
//! [`AgentClient::with_timeout`] set another; clones share one connection, so a clone
//! with its own timeout is cheap) and fails with a [`ClientError`] that keeps the
//! ttRPC status code and message.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hull_protocols::client::ClientError> {
//! use std::time::Duration;
//! use hull_protocols::{address::AgentAddress, client::AgentClient};
//!
//! let addr: AgentAddress = "unix:///run/hull/agent.sock".parse().expect("valid address");
//! let client = AgentClient::connect(&addr, Duration::from_secs(10)).await?;
//! let health = client.check().await?;
//! println!("{:?}", health.status.enum_value_or_default());
//! // A call that may block long: a clone without a per-call timeout.
//! let status = client.clone().with_timeout(Duration::ZERO).wait_process("c1", "").await?;
//! # let _ = status; Ok(()) }
//! ```

use std::time::Duration;

use ttrpc::Code;
use ttrpc::context::{self, Context};

use crate::address::AgentAddress;
use crate::agent_ttrpc::AgentServiceClient;
use crate::dial::{self, DialError};
use crate::health_ttrpc::HealthClient;

mod container;
mod misc;
mod network;
mod process;
mod sandbox;
mod storage;

pub use process::{Captured, READ_CHUNK, Stream};
pub use storage::{COPY_CHUNK, COPY_DIR_MODE, copy_file_requests};

/// Default per-call timeout.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Error text ttrpc 0.10 uses when a call's deadline passes on the client.
const TTRPC_DEADLINE_TEXT: &str = "Request deadline elapsed";

/// A failed dial or RPC.
///
/// Display texts are complete on their own; none of the variants has an
/// error `source`, so `{:#}`-style chain printing does not repeat anything.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent could not be reached.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The agent answered with a non-OK ttRPC status.
    #[error("{method} failed: {code:?}: {message}")]
    Rpc {
        /// Fully qualified short method name, e.g. `AgentService.GetGuestDetails`.
        method: &'static str,
        /// The status code (unknown numeric codes map to `UNKNOWN`).
        code: Code,
        /// The status message sent by the agent.
        message: String,
    },
    /// No answer within the per-call timeout.
    #[error("{method} failed: no reply within {timeout:?}")]
    Timeout {
        /// Fully qualified short method name.
        method: &'static str,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The connection or the encoding failed (not an RPC status).
    #[error("{method} failed: {error}")]
    Transport {
        /// Fully qualified short method name.
        method: &'static str,
        /// The ttrpc error.
        error: ttrpc::Error,
    },
}

impl ClientError {
    /// The ttRPC status code, for [`ClientError::Rpc`] only.
    pub fn rpc_code(&self) -> Option<Code> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The agent's status message, for [`ClientError::Rpc`] only.
    pub fn rpc_message(&self) -> Option<&str> {
        match self {
            Self::Rpc { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The method that failed (`AgentService.CreateContainer`), unless the dial did.
    pub fn method(&self) -> Option<&'static str> {
        match self {
            Self::Rpc { method, .. }
            | Self::Timeout { method, .. }
            | Self::Transport { method, .. } => Some(method),
            Self::Dial(_) => None,
        }
    }

    /// True when the agent answered `UNIMPLEMENTED`.
    pub fn is_unimplemented(&self) -> bool {
        self.rpc_code() == Some(Code::UNIMPLEMENTED)
    }

    /// Converts the error of a generated-client call into a `ClientError`.
    ///
    /// `method` names the call (e.g. `"AgentService.CreateContainer"`),
    /// `timeout` is the timeout that was set on its context.
    pub fn from_ttrpc(method: &'static str, timeout: Duration, err: ttrpc::Error) -> Self {
        match err {
            ttrpc::Error::RpcStatus(status) => Self::Rpc {
                method,
                code: status.code.enum_value().unwrap_or(Code::UNKNOWN),
                message: status.message,
            },
            ttrpc::Error::Others(ref text) if text == TTRPC_DEADLINE_TEXT => {
                Self::Timeout { method, timeout }
            }
            other => Self::Transport {
                method,
                error: other,
            },
        }
    }
}

/// A connected client of the agent's `AgentService` and `Health` services.
///
/// Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct AgentClient {
    agent: AgentServiceClient,
    health: HealthClient,
    timeout: Duration,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Dials `addr`, retrying transient failures for up to `deadline`
    /// (see [`dial::connect`]). The per-call timeout starts at
    /// [`DEFAULT_CALL_TIMEOUT`].
    pub async fn connect(addr: &AgentAddress, deadline: Duration) -> Result<Self, ClientError> {
        let client = dial::connect(addr, deadline).await?;
        Ok(Self::from_ttrpc_client(client))
    }

    /// Wraps an already-connected ttRPC client.
    pub fn from_ttrpc_client(client: ttrpc::asynchronous::Client) -> Self {
        Self {
            agent: AgentServiceClient::new(client.clone()),
            health: HealthClient::new(client),
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Sets the per-call timeout (builder style). `Duration::ZERO` disables it.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the per-call timeout. `Duration::ZERO` disables it.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A ttRPC context carrying the per-call timeout (`Duration::ZERO`: none).
    fn context(&self) -> Context {
        if self.timeout.is_zero() {
            Context::default()
        } else {
            context::with_duration(self.timeout)
        }
    }

    /// Makes one call through a generated client (`service`) with this client's
    /// timeout, mapping failures to [`ClientError`] named after `method`.
    async fn call<'a, S, T, F, Fut>(
        &self,
        service: &'a S,
        method: &'static str,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: FnOnce(&'a S, Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        let timeout = self.timeout;
        f(service, self.context())
            .await
            .map_err(|e| ClientError::from_ttrpc(method, timeout, e))
    }

    /// An `AgentService` call (see [`AgentClient::call`]).
    async fn call_agent<'a, T, F, Fut>(
        &'a self,
        method: &'static str,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: FnOnce(&'a AgentServiceClient, Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        self.call(&self.agent, method, f).await
    }

    /// A `Health` call (see [`AgentClient::call`]).
    async fn call_health<'a, T, F, Fut>(
        &'a self,
        method: &'static str,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: FnOnce(&'a HealthClient, Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        self.call(&self.health, method, f).await
    }
}
