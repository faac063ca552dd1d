//! The ttRPC face of the agent: protobuf in, domain calls, protobuf out.
//!
//! Handlers stay thin ([`agent`]): convert the request, call the [`Sandbox`], convert the
//! answer back. The conversions live beside them, one module per kind of message
//! ([`sandbox`], [`container`], [`device`] and [`oci`], [`storage`], [`network`], [`guest`],
//! [`guest_admin`], [`cpu_mem`], [`volume`]); they are the only code of the agent that
//! names protobuf types. Before any handler acts, the agent policy ([`policy`]) decides
//! whether the request may go on. Errors become ttRPC statuses in exactly one place,
//! [`status()`]. Every AgentService method
//! that hull does not implement yet answers `UNIMPLEMENTED` with its full name (the
//! generated defaults would answer `NOT_FOUND`, which a runtime could mistake for a
//! missing container).

mod agent;
pub mod container;
pub mod cpu_mem;
pub mod device;
pub mod guest;
pub mod guest_admin;
mod health;
pub mod network;
pub mod oci;
pub mod policy;
pub mod sandbox;
mod status;
pub mod storage;
pub mod volume;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::asynchronous::{MethodHandler, Service, TtrpcContext};
use ttrpc::{Code, Request, Response};

use crate::policy::PolicyGate;
use crate::sandbox::Sandbox;

pub use agent::{AgentRpc, IMPLEMENTED_AGENT_METHODS};
pub use health::{API_VERSION, HealthRpc};
pub use status::status;

/// The ttRPC service name of the agent API.
pub const AGENT_SERVICE: &str = "grpc.AgentService";

/// Every service the agent serves, ready for `ttrpc::asynchronous::Server::register_service`,
/// with no agent policy (until a `SetPolicy`).
pub fn services(sandbox: Arc<Sandbox>, under_init: bool) -> HashMap<String, Service> {
    services_with_policy(sandbox, under_init, Arc::default())
}

/// [`services`], every AgentService request checked by `policy` first ([`policy::guard`];
/// an agent built without the policy engine has no check).
pub fn services_with_policy(
    sandbox: Arc<Sandbox>,
    under_init: bool,
    policy: Arc<PolicyGate>,
) -> HashMap<String, Service> {
    let rpc = AgentRpc::new(sandbox, under_init).with_policy(policy.clone());
    let mut services = hull_protocols::agent_ttrpc::create_agent_service(Arc::new(rpc));
    if let Some(agent) = services.get_mut(AGENT_SERVICE) {
        answer_unimplemented(agent, AGENT_SERVICE, IMPLEMENTED_AGENT_METHODS);
        // Without the engine no policy is ever loaded: no check to install.
        if crate::policy::ENGINE_BUILT_IN {
            policy::guard(agent, &policy);
        }
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
        // And every method of the protocol is implemented: none answers UNIMPLEMENTED.
        for method in agent.methods.keys() {
            assert!(
                IMPLEMENTED_AGENT_METHODS.contains(&method.as_str()),
                "{method} answers UNIMPLEMENTED"
            );
        }
        assert_eq!(agent.methods.len(), 42);
        assert!(services.contains_key("grpc.Health"));
    }
}
