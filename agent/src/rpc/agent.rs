//! `grpc.AgentService` handlers.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hull_protocols::agent::{
    AddARPNeighborsRequest, AgentDetails, CreateSandboxRequest, DestroySandboxRequest,
    GuestDetailsRequest, GuestDetailsResponse, Interfaces, ListInterfacesRequest,
    ListRoutesRequest, Routes, UpdateInterfaceRequest, UpdateRoutesRequest,
};
use hull_protocols::agent_ttrpc::AgentService;
use hull_protocols::types::Interface;
use protobuf::well_known_types::empty::Empty;
use ttrpc::asynchronous::TtrpcContext;

use super::status;
use crate::error::AgentError;
use crate::guest::read_guest_facts;
use crate::guest_setup::SandboxSpec;
use crate::network::convert;
use crate::sandbox::Sandbox;

/// The methods below; every other AgentService method answers `UNIMPLEMENTED`.
pub const IMPLEMENTED_AGENT_METHODS: &[&str] = &[
    "GetGuestDetails",
    "CreateSandbox",
    "DestroySandbox",
    "UpdateInterface",
    "UpdateRoutes",
    "ListInterfaces",
    "ListRoutes",
    "AddARPNeighbors",
];

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

    async fn update_interface(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateInterfaceRequest,
    ) -> ttrpc::Result<Interface> {
        let spec = convert::interface_spec(req.interface.as_ref()).map_err(net_status)?;
        let state = self
            .sandbox
            .network()
            .update_interface(&spec)
            .await
            .map_err(net_status)?;
        Ok(convert::interface_to_proto(&state))
    }

    async fn update_routes(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        let routes = req
            .routes
            .as_ref()
            .map(|r| r.Routes.as_slice())
            .unwrap_or_default();
        let specs = convert::route_specs(routes).map_err(net_status)?;
        let routes = self
            .sandbox
            .network()
            .update_routes(&specs)
            .await
            .map_err(net_status)?;
        Ok(Routes {
            Routes: routes.iter().map(convert::route_to_proto).collect(),
            ..Default::default()
        })
    }

    async fn list_interfaces(
        &self,
        _ctx: &TtrpcContext,
        _req: ListInterfacesRequest,
    ) -> ttrpc::Result<Interfaces> {
        let list = self
            .sandbox
            .network()
            .list_interfaces()
            .await
            .map_err(net_status)?;
        Ok(Interfaces {
            Interfaces: list.iter().map(convert::interface_to_proto).collect(),
            ..Default::default()
        })
    }

    async fn list_routes(
        &self,
        _ctx: &TtrpcContext,
        _req: ListRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        let list = self
            .sandbox
            .network()
            .list_routes()
            .await
            .map_err(net_status)?;
        Ok(Routes {
            Routes: list.iter().map(convert::route_to_proto).collect(),
            ..Default::default()
        })
    }

    async fn add_arp_neighbors(
        &self,
        _ctx: &TtrpcContext,
        req: AddARPNeighborsRequest,
    ) -> ttrpc::Result<Empty> {
        let neighbors = req
            .neighbors
            .as_ref()
            .map(|n| n.ARPNeighbors.as_slice())
            .unwrap_or_default();
        let specs = convert::neighbor_specs(neighbors).map_err(net_status)?;
        self.sandbox
            .network()
            .add_arp_neighbors(&specs)
            .await
            .map_err(net_status)?;
        Ok(Empty::new())
    }
}

fn net_status(error: crate::network::NetworkError) -> ttrpc::Error {
    status(AgentError::from(error))
}
