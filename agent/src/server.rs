//! The agent's life: bind the ttRPC server, serve until the sandbox is destroyed or the
//! agent is told to stop (SIGTERM/SIGINT), then close every connection after flushing
//! the answers already given.

pub mod limits;

use std::collections::HashMap;
use std::sync::Arc;

use hull_protocols::address::AgentAddress;
use tokio::signal::unix::{SignalKind, signal};
use ttrpc::asynchronous::Server;
use ttrpc::asynchronous::transport::Listener;
use ttrpc::asynchronous::{MethodHandler, Service, TtrpcContext};
use ttrpc::{Code, Request, Response};

use crate::config::AgentConfig;
use crate::policy::{Policy, PolicyGate};
use crate::rpc;
use crate::sandbox::Sandbox;

/// Why the agent could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address (`agent.server_addr`).
        addr: AgentAddress,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// The bound server failed to start accepting.
    #[error("cannot start the ttRPC server: {0}")]
    Start(#[source] ttrpc::Error),
    /// The SIGTERM or SIGINT handler could not be installed.
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The image's agent policy cannot be enforced (unreadable, malformed, or this agent
    /// has no policy engine): the agent must not serve without it.
    #[error("refusing to serve without the image's agent policy {}", path.display())]
    Policy {
        /// The policy file (`/etc/kata-opa/default-policy.rego`).
        path: std::path::PathBuf,
        /// Why it cannot be enforced.
        #[source]
        source: crate::policy::PolicyError,
    },
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `DestroySandbox`: the VM should power off.
    SandboxDestroyed,
    /// SIGTERM or SIGINT.
    Signalled,
}

/// Serves the agent API on `config.server_addr` until the sandbox ends.
pub async fn serve(config: &AgentConfig, sandbox: Arc<Sandbox>) -> Result<Ending, ServerError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    let policy = Policy::from_file(&config.policy_file).map_err(|source| ServerError::Policy {
        path: config.policy_file.clone(),
        source,
    })?;
    if policy.is_enforcing() {
        tracing::info!(file = %config.policy_file.display(), "agent policy in force");
    }
    let addr = config.server_addr.clone();
    let listener = Listener::bind(addr.to_string()).map_err(|source| ServerError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let guard = limits::Guard::new(limits::Limits::default());
    let mut server = Server::new()
        .add_listener(limits::guarded_listener(listener, guard))
        .register_service(undecodable_is_invalid_argument(rpc::services_with_policy(
            sandbox.clone(),
            config.under_init,
            Arc::new(PolicyGate::new(policy)),
        )));
    server.start().await.map_err(ServerError::Start)?;
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "agent serving");

    let ending = tokio::select! {
        () = sandbox.destroyed() => Ending::SandboxDestroyed,
        _ = sigterm.recv() => Ending::Signalled,
        _ = sigint.recv() => Ending::Signalled,
    };
    tracing::info!(?ending, "agent stopping");
    // Stops accepting, then waits (bounded) for every connection to finish writing the
    // responses already queued, among them the one to DestroySandbox.
    if let Err(e) = server.shutdown().await {
        tracing::warn!(error = %e, "ttRPC server shutdown");
    }
    if let AgentAddress::Unix(path) = &addr {
        let _ = std::fs::remove_file(path);
    }
    Ok(ending)
}

/// The prefix of the error ttRPC's generated handlers return when a request's payload
/// does not decode (its `async_request_handler!`); the server turns such errors into
/// `UNKNOWN`.
const UNDECODABLE: &str = "Unpack request error";

/// Wraps every method so that a payload that does not decode is answered
/// `INVALID_ARGUMENT` naming the method, instead of ttRPC's `UNKNOWN`.
pub fn undecodable_is_invalid_argument(
    mut services: HashMap<String, Service>,
) -> HashMap<String, Service> {
    for (service_name, service) in &mut services {
        let methods = std::mem::take(&mut service.methods);
        service.methods = methods
            .into_iter()
            .map(|(method, inner)| {
                let path = format!("/{service_name}/{method}");
                let wrapped: Box<dyn MethodHandler + Send + Sync> =
                    Box::new(DecodeErrorIsInvalid { path, inner });
                (method, wrapped)
            })
            .collect();
    }
    services
}

/// A method whose decode failure is answered `INVALID_ARGUMENT`.
struct DecodeErrorIsInvalid {
    path: String,
    inner: Box<dyn MethodHandler + Send + Sync>,
}

#[async_trait::async_trait]
impl MethodHandler for DecodeErrorIsInvalid {
    async fn handler(&self, ctx: TtrpcContext, req: Request) -> ttrpc::Result<Response> {
        match self.inner.handler(ctx, req).await {
            Err(ttrpc::Error::Others(message)) if message.starts_with(UNDECODABLE) => {
                let detail = message.trim_start_matches(UNDECODABLE).trim();
                tracing::debug!(method = %self.path, %detail, "undecodable request");
                let mut response = Response::new();
                response.set_status(ttrpc::get_status(
                    Code::INVALID_ARGUMENT,
                    format!("{}: the request does not decode: {detail}", self.path),
                ));
                Ok(response)
            }
            other => other,
        }
    }
}
