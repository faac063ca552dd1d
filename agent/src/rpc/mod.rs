//! The ttRPC face of the agent: protobuf in, domain calls, protobuf out.
//!
//! Handlers stay thin; what they do lives in [`crate::sandbox`] and the modules below it.
//! Errors become ttRPC statuses in exactly one place, [`status`]. Every AgentService method
//! that hull does not implement yet answers `UNIMPLEMENTED` with its full name (the
//! generated defaults would answer `NOT_FOUND`, which a runtime could mistake for a
//! missing container).

mod agent;
mod health;
pub mod oci;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::asynchronous::{MethodHandler, Service, TtrpcContext};
use ttrpc::{Code, Request, Response};

use crate::container::ContainerError;
use crate::error::AgentError;
use crate::process::ProcessError;
use crate::sandbox::Sandbox;

pub use agent::{AgentRpc, IMPLEMENTED_AGENT_METHODS};
pub use health::HealthRpc;

/// The ttRPC service name of the agent API.
pub const AGENT_SERVICE: &str = "grpc.AgentService";

/// Every service the agent serves, ready for `ttrpc::asynchronous::Server::register_service`.
pub fn services(sandbox: Arc<Sandbox>, under_init: bool) -> HashMap<String, Service> {
    let mut services = hull_protocols::agent_ttrpc::create_agent_service(Arc::new(AgentRpc::new(
        sandbox, under_init,
    )));
    if let Some(agent) = services.get_mut(AGENT_SERVICE) {
        answer_unimplemented(agent, AGENT_SERVICE, IMPLEMENTED_AGENT_METHODS);
    }
    services.extend(hull_protocols::health_ttrpc::create_health(Arc::new(
        HealthRpc,
    )));
    services
}

/// Replaces the handler of every method of `service` not listed in `implemented`.
fn answer_unimplemented(service: &mut Service, service_name: &str, implemented: &[&str]) {
    for (method, handler) in service.methods.iter_mut() {
        if !implemented.contains(&method.as_str()) {
            *handler = Box::new(Unimplemented {
                path: format!("/{service_name}/{method}"),
            });
        }
    }
}

struct Unimplemented {
    path: String,
}

#[async_trait]
impl MethodHandler for Unimplemented {
    async fn handler(&self, _ctx: TtrpcContext, _req: Request) -> ttrpc::Result<Response> {
        // A handler's `Err` would reach the client as UNKNOWN; like the generated
        // handlers, answer with the status inside the response.
        let mut response = Response::new();
        response.set_status(ttrpc::get_status(
            Code::UNIMPLEMENTED,
            format!("{} is not implemented by hull-agent", self.path),
        ));
        Ok(response)
    }
}

/// The one mapping from domain errors to ttRPC statuses.
pub fn status(error: AgentError) -> ttrpc::Error {
    let code = match &error {
        AgentError::NotFound(_) => Code::NOT_FOUND,
        AgentError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
        AgentError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
        AgentError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        AgentError::Io { .. } => Code::INTERNAL,
        AgentError::Container(e) => match e {
            ContainerError::InvalidSpec(_) | ContainerError::MissingRootfs(_) => {
                Code::INVALID_ARGUMENT
            }
            ContainerError::NoSuchContainer(_) | ContainerError::NoSuchProcess { .. } => {
                Code::NOT_FOUND
            }
            ContainerError::ContainerExists(_) | ContainerError::ProcessExists { .. } => {
                Code::ALREADY_EXISTS
            }
            ContainerError::WrongState { .. } => Code::FAILED_PRECONDITION,
            ContainerError::Timeout(_) => Code::DEADLINE_EXCEEDED,
            ContainerError::Process(p) => match p {
                ProcessError::InvalidSignal(_) => Code::INVALID_ARGUMENT,
                ProcessError::StdinClosed
                | ProcessError::NoTerminal
                | ProcessError::NoSuchStream(_) => Code::FAILED_PRECONDITION,
                ProcessError::Sys { .. } | ProcessError::Io(_) => Code::INTERNAL,
            },
            ContainerError::Helper(_) | ContainerError::SelfExe(_) | ContainerError::Cgroup(_) => {
                Code::INTERNAL
            }
        },
    };
    tracing::debug!(?code, %error, "request failed");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implemented_method_exists_in_the_protocol() {
        let services = services(Arc::new(Sandbox::new()), false);
        let agent = &services[AGENT_SERVICE];
        for method in IMPLEMENTED_AGENT_METHODS {
            assert!(agent.methods.contains_key(*method), "no such RPC: {method}");
        }
        assert!(services.contains_key("grpc.Health"));
    }

    #[test]
    fn errors_map_to_their_codes() {
        let cases = [
            (AgentError::NotFound("x".into()), Code::NOT_FOUND),
            (
                AgentError::InvalidArgument("x".into()),
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::FailedPrecondition("x".into()),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::io("/x", std::io::Error::other("boom")),
                Code::INTERNAL,
            ),
            (AgentError::AlreadyExists("x".into()), Code::ALREADY_EXISTS),
            (
                ContainerError::NoSuchContainer("c".into()).into(),
                Code::NOT_FOUND,
            ),
            (
                ContainerError::ContainerExists("c".into()).into(),
                Code::ALREADY_EXISTS,
            ),
            (
                ContainerError::InvalidSpec("x".into()).into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::WrongState {
                    id: "c".into(),
                    state: crate::container::State::Stopped,
                    action: "start",
                }
                .into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                ContainerError::Process(ProcessError::InvalidSignal(99)).into(),
                Code::INVALID_ARGUMENT,
            ),
        ];
        for (error, code) in cases {
            match status(error) {
                ttrpc::Error::RpcStatus(s) => assert_eq!(s.code(), code),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
