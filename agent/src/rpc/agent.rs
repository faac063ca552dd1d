//! `grpc.AgentService` handlers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hull_protocols::agent::{
    AddARPNeighborsRequest, AgentDetails, CloseStdinRequest, CreateContainerRequest,
    CreateSandboxRequest, DestroySandboxRequest, ExecProcessRequest, GetOOMEventRequest,
    GuestDetailsRequest, GuestDetailsResponse, Interfaces, ListInterfacesRequest,
    ListRoutesRequest, OOMEvent, PauseContainerRequest, ReadStreamRequest, ReadStreamResponse,
    RemoveContainerRequest, ResumeContainerRequest, Routes, SignalProcessRequest,
    StartContainerRequest, StatsContainerRequest, StatsContainerResponse, TtyWinResizeRequest,
    UpdateContainerRequest, UpdateInterfaceRequest, UpdateRoutesRequest, WaitProcessRequest,
    WaitProcessResponse, WriteStreamRequest, WriteStreamResponse,
};
use hull_protocols::agent_ttrpc::AgentService;
use hull_protocols::types::Interface;
use protobuf::well_known_types::empty::Empty;
use ttrpc::asynchronous::TtrpcContext;

use super::{oci, status};
use crate::error::AgentError;
use crate::guest::read_guest_facts;
use crate::guest_setup::SandboxSpec;
use crate::network::convert;
use crate::sandbox::Sandbox;
use hull_container::ContainerError;
use hull_container::process::signal_from_number;

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

fn container_err(e: ContainerError) -> ttrpc::Error {
    status(AgentError::from(e))
}

const VSOCK_STDIO: &str =
    "stdio over vsock ports is not supported: use ReadStdout/ReadStderr/WriteStdin";

/// Request fields this agent does not act on answer INVALID_ARGUMENT instead of being
/// silently dropped. Per-container `devices` (resolving a host device into the spec) are
/// not wired to the device layer yet, so they are refused here.
fn refuse_unsupported_create_fields(req: &CreateContainerRequest) -> Result<(), AgentError> {
    let refuse = |what: &str| {
        Err(AgentError::InvalidArgument(format!(
            "{what} is not supported"
        )))
    };
    if !req.shared_mounts.is_empty() {
        return refuse("shared_mounts");
    }
    if !req.devices.is_empty() {
        return refuse("CreateContainer devices (the device layer is not wired here yet)");
    }
    if req.stdin_port != 0 || req.stdout_port != 0 || req.stderr_port != 0 {
        return Err(AgentError::InvalidArgument(VSOCK_STDIO.into()));
    }
    Ok(())
}

fn missing(what: &str) -> ttrpc::Error {
    status(AgentError::InvalidArgument(format!(
        "the request has no {what}"
    )))
}

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
                supports_seccomp: true,
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

    async fn create_container(
        &self,
        _ctx: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        refuse_unsupported_create_fields(&req).map_err(status)?;
        let mut spec = req
            .OCI
            .clone()
            .into_option()
            .ok_or_else(|| missing("OCI spec"))?;
        if let Some(process) = spec.Process.as_mut() {
            oci::apply_string_user(process, &req.string_user).map_err(status)?;
        }
        let spec = oci::spec_from_proto(&spec).map_err(status)?;
        let storages = req
            .storages
            .iter()
            .map(|s| self.sandbox.storages().parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| status(e.into()))?;
        self.sandbox
            .create_container(
                &req.container_id,
                &req.exec_id,
                spec,
                &storages,
                req.sandbox_pidns,
            )
            .await
            .map_err(status)?;
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
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn remove_container(
        &self,
        _ctx: &TtrpcContext,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<Empty> {
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout.into()));
        self.sandbox
            .remove_container(&req.container_id, timeout)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn exec_process(
        &self,
        _ctx: &TtrpcContext,
        req: ExecProcessRequest,
    ) -> ttrpc::Result<Empty> {
        if req.stdin_port != 0 || req.stdout_port != 0 || req.stderr_port != 0 {
            return Err(status(AgentError::InvalidArgument(VSOCK_STDIO.into())));
        }
        let mut process = req
            .process
            .clone()
            .into_option()
            .ok_or_else(|| missing("process"))?;
        oci::apply_string_user(&mut process, &req.string_user).map_err(status)?;
        let process = oci::process_from_proto(&process).map_err(status)?;
        self.sandbox
            .containers()
            .exec(&req.container_id, &req.exec_id, &process)
            .await
            .map_err(container_err)?;
        Ok(Empty::new())
    }

    async fn signal_process(
        &self,
        _ctx: &TtrpcContext,
        req: SignalProcessRequest,
    ) -> ttrpc::Result<Empty> {
        let signal = signal_from_number(req.signal).map_err(|e| container_err(e.into()))?;
        let containers = self.sandbox.containers();
        containers
            .signal(&req.container_id, &req.exec_id, signal)
            .map_err(container_err)?;
        Ok(Empty::new())
    }

    async fn wait_process(
        &self,
        _ctx: &TtrpcContext,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        let containers = self.sandbox.containers();
        let status = containers
            .wait(&req.container_id, &req.exec_id)
            .await
            .map_err(container_err)?;
        Ok(WaitProcessResponse {
            status: status.code(),
            ..Default::default()
        })
    }

    async fn update_container(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        let resources = req.resources.as_ref().ok_or_else(|| missing("resources"))?;
        let resources = oci::resources_from_proto(resources).map_err(status)?;
        let containers = self.sandbox.containers();
        containers
            .update(&req.container_id, &resources)
            .map_err(container_err)?;
        Ok(Empty::new())
    }

    async fn stats_container(
        &self,
        _ctx: &TtrpcContext,
        req: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        let stats = self
            .sandbox
            .containers()
            .stats(&req.container_id)
            .map_err(container_err)?;
        Ok(StatsContainerResponse {
            cgroup_stats: Some(oci::stats_to_proto(&stats)).into(),
            ..Default::default()
        })
    }

    async fn pause_container(
        &self,
        _ctx: &TtrpcContext,
        req: PauseContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox
            .containers()
            .pause(&req.container_id)
            .map_err(container_err)?;
        Ok(Empty::new())
    }

    async fn resume_container(
        &self,
        _ctx: &TtrpcContext,
        req: ResumeContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.sandbox
            .containers()
            .resume(&req.container_id)
            .map_err(container_err)?;
        Ok(Empty::new())
    }

    async fn write_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: WriteStreamRequest,
    ) -> ttrpc::Result<WriteStreamResponse> {
        let process = self
            .sandbox
            .containers()
            .process(&req.container_id, &req.exec_id)
            .map_err(container_err)?;
        // As Kata's runtime-rs: empty data closes stdin.
        let len = if req.data.is_empty() {
            process
                .io
                .close_stdin()
                .await
                .map_err(|e| container_err(e.into()))?;
            0
        } else {
            process
                .io
                .write(&req.data)
                .await
                .map_err(|e| container_err(e.into()))?
        };
        Ok(WriteStreamResponse {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            ..Default::default()
        })
    }

    async fn read_stdout(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.read_stream(req, false).await
    }

    async fn read_stderr(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.read_stream(req, true).await
    }

    async fn close_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: CloseStdinRequest,
    ) -> ttrpc::Result<Empty> {
        let process = self
            .sandbox
            .containers()
            .process(&req.container_id, &req.exec_id)
            .map_err(container_err)?;
        process
            .io
            .close_stdin()
            .await
            .map_err(|e| container_err(e.into()))?;
        Ok(Empty::new())
    }

    async fn tty_win_resize(
        &self,
        _ctx: &TtrpcContext,
        req: TtyWinResizeRequest,
    ) -> ttrpc::Result<Empty> {
        let process = self
            .sandbox
            .containers()
            .process(&req.container_id, &req.exec_id)
            .map_err(container_err)?;
        let rows = u16::try_from(req.row).unwrap_or(u16::MAX);
        let cols = u16::try_from(req.column).unwrap_or(u16::MAX);
        process
            .io
            .resize(rows, cols)
            .map_err(|e| container_err(e.into()))?;
        Ok(Empty::new())
    }

    async fn get_oom_event(
        &self,
        _ctx: &TtrpcContext,
        _req: GetOOMEventRequest,
    ) -> ttrpc::Result<OOMEvent> {
        let container_id = self.sandbox.containers().next_oom_event().await;
        Ok(OOMEvent {
            container_id,
            ..Default::default()
        })
    }
}

fn net_status(error: crate::network::NetworkError) -> ttrpc::Error {
    status(AgentError::from(error))
}

impl AgentRpc {
    async fn read_stream(
        &self,
        req: ReadStreamRequest,
        stderr: bool,
    ) -> ttrpc::Result<ReadStreamResponse> {
        let process = self
            .sandbox
            .containers()
            .process(&req.container_id, &req.exec_id)
            .map_err(container_err)?;
        let data = process
            .io
            .read(stderr, req.len as usize)
            .await
            .map_err(|e| container_err(e.into()))?;
        Ok(ReadStreamResponse {
            data,
            ..Default::default()
        })
    }
}
