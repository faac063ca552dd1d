//! `grpc.AgentService` handlers.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hull_protocols::agent::{
    AgentDetails, CreateSandboxRequest, DestroySandboxRequest, GuestDetailsRequest,
    GuestDetailsResponse,
};
use hull_protocols::agent_ttrpc::AgentService;
use protobuf::well_known_types::empty::Empty;
use ttrpc::asynchronous::TtrpcContext;

use super::status;
use crate::guest::read_guest_facts;
use crate::guest_setup::SandboxSpec;
use crate::sandbox::Sandbox;

/// The methods below; every other AgentService method answers `UNIMPLEMENTED`.
pub const IMPLEMENTED_AGENT_METHODS: &[&str] =
    &["GetGuestDetails", "CreateSandbox", "DestroySandbox"];

/// The AgentService implementation.
pub struct AgentRpc {
    sandbox: Arc<Sandbox>,
    under_init: bool,
}

impl AgentRpc {
    pub fn new(sandbox: Arc<Sandbox>, under_init: bool) -> Self {
        Self {
            sandbox,
            under_init,
        }
    }
}

#[async_trait]
impl AgentService for AgentRpc {
    async fn get_guest_details(
        &self,
        _ctx: &TtrpcContext,
        req: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        let facts = read_guest_facts(Path::new("/sys")).map_err(status)?;
        Ok(GuestDetailsResponse {
            mem_block_size_bytes: if req.mem_block_size {
                facts.mem_block_size_bytes
            } else {
                0
            },
            support_mem_hotplug_probe: req.mem_hotplug_probe && facts.mem_hotplug_probe,
            agent_details: Some(AgentDetails {
                version: env!("CARGO_PKG_VERSION").to_string(),
                init_daemon: self.under_init,
                // Filled in as device handlers are built.
                device_handlers: Vec::new(),
                storage_handlers: self
                    .sandbox
                    .storages()
                    .drivers()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                supports_seccomp: false,
                extra_features: Vec::new(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }

    async fn create_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<Empty> {
        let spec = SandboxSpec::from_proto(&req, self.sandbox.storages()).map_err(status)?;
        self.sandbox.create(spec).await.map_err(status)?;
        Ok(Empty::new())
    }

    async fn destroy_sandbox(
        &self,
        _ctx: &TtrpcContext,
        _req: DestroySandboxRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox.destroy().await.map_err(status)?;
        tracing::info!("sandbox destroyed; the agent will exit");
        Ok(Empty::new())
    }
}
