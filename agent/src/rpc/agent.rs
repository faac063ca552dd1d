//! `grpc.AgentService` handlers: each converts the request (the sibling modules), calls
//! one method of the [`Sandbox`], and converts the answer back. Errors go through
//! [`status`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hull_protocols::agent::{
    AddARPNeighborsRequest, CloseStdinRequest, CreateContainerRequest, CreateSandboxRequest,
    DestroySandboxRequest, ExecProcessRequest, GetOOMEventRequest, GuestDetailsRequest,
    GuestDetailsResponse, Interfaces, ListInterfacesRequest, ListRoutesRequest, OOMEvent,
    PauseContainerRequest, ReadStreamRequest, ReadStreamResponse, RemoveContainerRequest,
    ResumeContainerRequest, Routes, SignalProcessRequest, StartContainerRequest,
    StatsContainerRequest, StatsContainerResponse, TtyWinResizeRequest, UpdateContainerRequest,
    UpdateInterfaceRequest, UpdateRoutesRequest, WaitProcessRequest, WaitProcessResponse,
    WriteStreamRequest, WriteStreamResponse,
};
use hull_protocols::agent_ttrpc::AgentService;
use hull_protocols::types::Interface;
use protobuf::well_known_types::empty::Empty;
use ttrpc::asynchronous::TtrpcContext;

use super::status::status;
use super::{container, network, oci, sandbox};
use crate::error::AgentError;
use crate::sandbox::{OutputStream, Sandbox};

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
    "CreateContainer",
    "StartContainer",
    "RemoveContainer",
    "ExecProcess",
    "SignalProcess",
    "WaitProcess",
    "UpdateContainer",
    "StatsContainer",
    "PauseContainer",
    "ResumeContainer",
    "WriteStdin",
    "ReadStdout",
    "ReadStderr",
    "CloseStdin",
    "TtyWinResize",
    "GetOOMEvent",
];

/// The AgentService implementation.
pub struct AgentRpc {
    sandbox: Arc<Sandbox>,
    under_init: bool,
}

impl AgentRpc {
    /// Serves `sandbox`. `under_init` (the agent was started by hull-init) is reported
    /// to the host as `GetGuestDetails`' `init_daemon`.
    pub fn new(sandbox: Arc<Sandbox>, under_init: bool) -> Self {
        Self {
            sandbox,
            under_init,
        }
    }
}

/// Any error the sandbox's layers answer, as a ttRPC status.
fn fail(error: impl Into<AgentError>) -> ttrpc::Error {
    status(error.into())
}

#[async_trait]
impl AgentService for AgentRpc {
    async fn get_guest_details(
        &self,
        _ctx: &TtrpcContext,
        req: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        let details = self.sandbox.guest_details().map_err(fail)?;
        Ok(sandbox::guest_details_to_proto(
            &req,
            details,
            self.under_init,
        ))
    }

    async fn create_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<Empty> {
        let request = sandbox::sandbox_request(&req).map_err(fail)?;
        self.sandbox.create(&request).await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn destroy_sandbox(
        &self,
        _ctx: &TtrpcContext,
        _req: DestroySandboxRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox.destroy().await.map_err(fail)?;
        tracing::info!("sandbox destroyed; the agent will exit");
        Ok(Empty::new())
    }

    async fn update_interface(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateInterfaceRequest,
    ) -> ttrpc::Result<Interface> {
        let spec = network::interface_spec(req.interface.as_ref()).map_err(fail)?;
        let network = self.sandbox.network();
        let state = network.update_interface(&spec).await.map_err(fail)?;
        Ok(network::interface_to_proto(&state))
    }

    async fn update_routes(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        let routes = req.routes.as_ref().map(|r| r.Routes.as_slice());
        let specs = network::route_specs(routes.unwrap_or_default()).map_err(fail)?;
        let network = self.sandbox.network();
        let routes = network.update_routes(&specs).await.map_err(fail)?;
        Ok(network::routes_to_proto(&routes))
    }

    async fn list_interfaces(
        &self,
        _ctx: &TtrpcContext,
        _req: ListInterfacesRequest,
    ) -> ttrpc::Result<Interfaces> {
        let list = self.sandbox.network().list_interfaces().await;
        Ok(network::interfaces_to_proto(&list.map_err(fail)?))
    }

    async fn list_routes(
        &self,
        _ctx: &TtrpcContext,
        _req: ListRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        let list = self.sandbox.network().list_routes().await;
        Ok(network::routes_to_proto(&list.map_err(fail)?))
    }

    async fn add_arp_neighbors(
        &self,
        _ctx: &TtrpcContext,
        req: AddARPNeighborsRequest,
    ) -> ttrpc::Result<Empty> {
        let neighbors = req.neighbors.as_ref().map(|n| n.ARPNeighbors.as_slice());
        let specs = network::neighbor_specs(neighbors.unwrap_or_default()).map_err(fail)?;
        let network = self.sandbox.network();
        network.add_arp_neighbors(&specs).await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn create_container(
        &self,
        _ctx: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        let request = container::container_request(&req).map_err(fail)?;
        self.sandbox.create_container(request).await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn start_container(
        &self,
        _ctx: &TtrpcContext,
        req: StartContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox
            .start_container(&req.container_id)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn remove_container(
        &self,
        _ctx: &TtrpcContext,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<Empty> {
        // 0: no bound.
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout.into()));
        self.sandbox
            .remove_container(&req.container_id, timeout)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn exec_process(
        &self,
        _ctx: &TtrpcContext,
        req: ExecProcessRequest,
    ) -> ttrpc::Result<Empty> {
        let process = container::exec_process(&req).map_err(fail)?;
        let stdio = container::exec_stdio_ports(&req);
        self.sandbox
            .exec_process(&req.container_id, &req.exec_id, &process, stdio)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn signal_process(
        &self,
        _ctx: &TtrpcContext,
        req: SignalProcessRequest,
    ) -> ttrpc::Result<Empty> {
        let signal = container::signal(req.signal).map_err(fail)?;
        self.sandbox
            .signal_process(&req.container_id, &req.exec_id, signal)
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn wait_process(
        &self,
        _ctx: &TtrpcContext,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        let exit = self
            .sandbox
            .wait_process(&req.container_id, &req.exec_id)
            .await
            .map_err(fail)?;
        Ok(WaitProcessResponse {
            status: exit.code(),
            ..Default::default()
        })
    }

    async fn update_container(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        let resources = container::resources(req.resources.as_ref()).map_err(fail)?;
        self.sandbox
            .update_container(&req.container_id, &resources)
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn stats_container(
        &self,
        _ctx: &TtrpcContext,
        req: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        let stats = self.sandbox.container_stats(&req.container_id);
        Ok(StatsContainerResponse {
            cgroup_stats: Some(oci::stats_to_proto(&stats.map_err(fail)?)).into(),
            ..Default::default()
        })
    }

    async fn pause_container(
        &self,
        _ctx: &TtrpcContext,
        req: PauseContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox
            .pause_container(&req.container_id)
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn resume_container(
        &self,
        _ctx: &TtrpcContext,
        req: ResumeContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox
            .resume_container(&req.container_id)
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn write_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: WriteStreamRequest,
    ) -> ttrpc::Result<WriteStreamResponse> {
        let (id, exec_id) = (&req.container_id, &req.exec_id);
        // As Kata's runtime-rs: empty data closes stdin.
        let len = if req.data.is_empty() {
            self.sandbox.close_stdin(id, exec_id).await.map(|()| 0)
        } else {
            self.sandbox.write_stdin(id, exec_id, &req.data).await
        };
        Ok(WriteStreamResponse {
            len: u32::try_from(len.map_err(fail)?).unwrap_or(u32::MAX),
            ..Default::default()
        })
    }

    async fn read_stdout(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.read_output(req, OutputStream::Stdout).await
    }

    async fn read_stderr(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.read_output(req, OutputStream::Stderr).await
    }

    async fn close_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: CloseStdinRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox
            .close_stdin(&req.container_id, &req.exec_id)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn tty_win_resize(
        &self,
        _ctx: &TtrpcContext,
        req: TtyWinResizeRequest,
    ) -> ttrpc::Result<Empty> {
        let (rows, cols) = container::window_size(req.row, req.column);
        self.sandbox
            .resize_tty(&req.container_id, &req.exec_id, rows, cols)
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn get_oom_event(
        &self,
        _ctx: &TtrpcContext,
        _req: GetOOMEventRequest,
    ) -> ttrpc::Result<OOMEvent> {
        Ok(OOMEvent {
            container_id: self.sandbox.next_oom_event().await,
            ..Default::default()
        })
    }
}

impl AgentRpc {
    async fn read_output(
        &self,
        req: ReadStreamRequest,
        stream: OutputStream,
    ) -> ttrpc::Result<ReadStreamResponse> {
        let read =
            self.sandbox
                .read_output(&req.container_id, &req.exec_id, stream, req.len as usize);
        Ok(ReadStreamResponse {
            data: read.await.map_err(fail)?,
            ..Default::default()
        })
    }
}
