//! A typed host-side client of the agent.
//!
//! [`AgentClient`] dials the agent (see [`crate::dial`]), wraps the generated
//! [`AgentServiceClient`] and [`HealthClient`], applies a per-call timeout,
//! and turns ttRPC failures into [`ClientError`] values that keep the RPC
//! status code visible.
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
//! # Ok(()) }
//! ```

use std::time::Duration;

use ttrpc::Code;
use ttrpc::context::{self, Context};

use crate::address::AgentAddress;
use crate::agent::{
    CloseStdinRequest, CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest,
    ExecProcessRequest, GetOOMEventRequest, GuestDetailsRequest, GuestDetailsResponse,
    ReadStreamRequest, RemoveContainerRequest, SignalProcessRequest, StartContainerRequest,
    StatsContainerRequest, StatsContainerResponse, WaitProcessRequest, WriteStreamRequest,
};
use crate::agent_ttrpc::AgentServiceClient;
use crate::dial::{self, DialError};
use crate::health::{CheckRequest, HealthCheckResponse, VersionCheckResponse};
use crate::health_ttrpc::HealthClient;

/// Default per-call timeout.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Error text ttrpc 0.10 uses when a call's deadline passes on the client.
const TTRPC_DEADLINE_TEXT: &str = "Request deadline elapsed";

/// A ttRPC context with `timeout` (`Duration::ZERO` means none), for calls
/// made directly through the generated clients.
pub fn default_context(timeout: Duration) -> Context {
    if timeout.is_zero() {
        Context::default()
    } else {
        context::with_duration(timeout)
    }
}

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

fn read_request(container_id: &str, exec_id: &str, len: u32) -> ReadStreamRequest {
    ReadStreamRequest {
        container_id: container_id.to_owned(),
        exec_id: exec_id.to_owned(),
        len,
        ..Default::default()
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

    /// A ttRPC context carrying the per-call timeout, for calls made through
    /// [`AgentClient::agent`] or [`AgentClient::health`].
    pub fn context(&self) -> Context {
        default_context(self.timeout)
    }

    /// The generated `AgentService` client, for every RPC without a
    /// convenience method here. Use [`AgentClient::context`] and
    /// [`ClientError::from_ttrpc`] for consistent timeouts and errors.
    pub fn agent(&self) -> &AgentServiceClient {
        &self.agent
    }

    /// The generated `Health` client.
    pub fn health(&self) -> &HealthClient {
        &self.health
    }

    /// Calls any `AgentService` RPC through the generated client with this
    /// client's timeout, mapping failures to [`ClientError`]:
    ///
    /// ```no_run
    /// # async fn demo(client: &hull_protocols::AgentClient) -> Result<(), hull_protocols::ClientError> {
    /// use hull_protocols::agent::StartContainerRequest;
    /// let req = StartContainerRequest { container_id: "c1".into(), ..Default::default() };
    /// client
    ///     .call_agent("AgentService.StartContainer", |agent, ctx| agent.start_container(ctx, &req))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn call_agent<'a, T, F, Fut>(
        &'a self,
        method: &'static str,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: FnOnce(&'a AgentServiceClient, Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        f(&self.agent, self.context())
            .await
            .map_err(self.map_err(method))
    }

    fn map_err(&self, method: &'static str) -> impl FnOnce(ttrpc::Error) -> ClientError {
        let timeout = self.timeout;
        move |e| ClientError::from_ttrpc(method, timeout, e)
    }

    /// `Health.Check` for the whole agent (empty service name).
    pub async fn check(&self) -> Result<HealthCheckResponse, ClientError> {
        self.health
            .check(self.context(), &CheckRequest::new())
            .await
            .map_err(self.map_err("Health.Check"))
    }

    /// `Health.Version`.
    pub async fn version(&self) -> Result<VersionCheckResponse, ClientError> {
        self.health
            .version(self.context(), &CheckRequest::new())
            .await
            .map_err(self.map_err("Health.Version"))
    }

    /// `AgentService.GetGuestDetails`, asking for the memory block size and
    /// memory-hotplug-probe support.
    pub async fn guest_details(&self) -> Result<GuestDetailsResponse, ClientError> {
        let req = GuestDetailsRequest {
            mem_block_size: true,
            mem_hotplug_probe: true,
            ..Default::default()
        };
        self.agent
            .get_guest_details(self.context(), &req)
            .await
            .map_err(self.map_err("AgentService.GetGuestDetails"))
    }

    /// `AgentService.StatsContainer` for `container_id`.
    pub async fn stats_container(
        &self,
        container_id: &str,
    ) -> Result<StatsContainerResponse, ClientError> {
        let req = StatsContainerRequest {
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.agent
            .stats_container(self.context(), &req)
            .await
            .map_err(self.map_err("AgentService.StatsContainer"))
    }

    /// `AgentService.CreateSandbox`.
    pub async fn create_sandbox(&self, req: &CreateSandboxRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.CreateSandbox", |agent, ctx| {
            agent.create_sandbox(ctx, req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.CreateContainer`: the container and its init process, which waits
    /// for [`AgentClient::start_container`].
    pub async fn create_container(&self, req: &CreateContainerRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.CreateContainer", |agent, ctx| {
            agent.create_container(ctx, req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<(), ClientError> {
        let req = StartContainerRequest {
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.StartContainer", |agent, ctx| {
            agent.start_container(ctx, &req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.ExecProcess`.
    pub async fn exec_process(&self, req: &ExecProcessRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.ExecProcess", |agent, ctx| {
            agent.exec_process(ctx, req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.WaitProcess`: the exit status (128+N for a process killed by signal
    /// N) once the process has ended. An empty `exec_id` is the container's init process.
    ///
    /// It blocks as long as the process runs: call it on a client without a per-call
    /// timeout (`client.clone().with_timeout(Duration::ZERO)`) unless a bound is wanted.
    pub async fn wait_process(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<i32, ClientError> {
        let req = WaitProcessRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.WaitProcess", |agent, ctx| {
            agent.wait_process(ctx, &req)
        })
        .await
        .map(|r| r.status)
    }

    /// `AgentService.SignalProcess`; an empty `exec_id` signals every process of the
    /// container.
    pub async fn signal_process(
        &self,
        container_id: &str,
        exec_id: &str,
        signal: u32,
    ) -> Result<(), ClientError> {
        let req = SignalProcessRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            ..Default::default()
        };
        self.call_agent("AgentService.SignalProcess", |agent, ctx| {
            agent.signal_process(ctx, &req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.RemoveContainer`, giving the agent `timeout_secs` (0: its default)
    /// to stop the container.
    pub async fn remove_container(
        &self,
        container_id: &str,
        timeout_secs: u32,
    ) -> Result<(), ClientError> {
        let req = RemoveContainerRequest {
            container_id: container_id.to_owned(),
            timeout: timeout_secs,
            ..Default::default()
        };
        self.call_agent("AgentService.RemoveContainer", |agent, ctx| {
            agent.remove_container(ctx, &req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.ReadStdout`: up to `len` bytes, waiting for at least one; empty at
    /// the end of the stream. Blocks like [`AgentClient::wait_process`].
    pub async fn read_stdout(
        &self,
        container_id: &str,
        exec_id: &str,
        len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let req = read_request(container_id, exec_id, len);
        self.call_agent("AgentService.ReadStdout", |agent, ctx| {
            agent.read_stdout(ctx, &req)
        })
        .await
        .map(|r| r.data)
    }

    /// `AgentService.ReadStderr`, as [`AgentClient::read_stdout`].
    pub async fn read_stderr(
        &self,
        container_id: &str,
        exec_id: &str,
        len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let req = read_request(container_id, exec_id, len);
        self.call_agent("AgentService.ReadStderr", |agent, ctx| {
            agent.read_stderr(ctx, &req)
        })
        .await
        .map(|r| r.data)
    }

    /// `AgentService.WriteStdin`; answers how many bytes were written.
    pub async fn write_stdin(
        &self,
        container_id: &str,
        exec_id: &str,
        data: &[u8],
    ) -> Result<u32, ClientError> {
        let req = WriteStreamRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            data: data.to_vec(),
            ..Default::default()
        };
        self.call_agent("AgentService.WriteStdin", |agent, ctx| {
            agent.write_stdin(ctx, &req)
        })
        .await
        .map(|r| r.len)
    }

    /// `AgentService.CloseStdin`.
    pub async fn close_stdin(&self, container_id: &str, exec_id: &str) -> Result<(), ClientError> {
        let req = CloseStdinRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.CloseStdin", |agent, ctx| {
            agent.close_stdin(ctx, &req)
        })
        .await
        .map(|_| ())
    }

    /// `AgentService.GetOOMEvent`: waits for the next OOM kill in any container and
    /// answers its id. Blocks like [`AgentClient::wait_process`].
    pub async fn get_oom_event(&self) -> Result<String, ClientError> {
        let req = GetOOMEventRequest::new();
        self.call_agent("AgentService.GetOOMEvent", |agent, ctx| {
            agent.get_oom_event(ctx, &req)
        })
        .await
        .map(|r| r.container_id)
    }

    /// `AgentService.DestroySandbox`.
    pub async fn destroy_sandbox(&self) -> Result<(), ClientError> {
        self.agent
            .destroy_sandbox(self.context(), &DestroySandboxRequest::new())
            .await
            .map(|_| ())
            .map_err(self.map_err("AgentService.DestroySandbox"))
    }
}
