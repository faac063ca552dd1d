//! `grpc.AgentService` handlers: each converts the request (the sibling modules), calls
//! one method of the [`Sandbox`], and converts the answer back. Errors go through
//! [`status`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hull_protocols::agent::{
    AddARPNeighborsRequest, AddSwapPathRequest, AddSwapRequest, CloseStdinRequest, CopyFileRequest,
    CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest, ExecProcessRequest,
    GetDiagnosticDataRequest, GetDiagnosticDataResponse, GetIPTablesRequest, GetIPTablesResponse,
    GetMetricsRequest, GetOOMEventRequest, GuestDetailsRequest, GuestDetailsResponse, Interfaces,
    ListInterfacesRequest, ListRoutesRequest, MemAgentCompactConfig, MemAgentMemcgConfig,
    MemHotplugByProbeRequest, Metrics, OOMEvent, OnlineCPUMemRequest, PauseContainerRequest,
    ReadStreamRequest, ReadStreamResponse, RemoveContainerRequest,
    RemoveStaleVirtiofsShareMountsRequest, ReseedRandomDevRequest, ResizeVolumeRequest,
    ResumeContainerRequest, Routes, SetGuestDateTimeRequest, SetIPTablesRequest,
    SetIPTablesResponse, SetPolicyRequest, SignalProcessRequest, StartContainerRequest,
    StatsContainerRequest, StatsContainerResponse, TtyWinResizeRequest, UpdateContainerRequest,
    UpdateEphemeralMountsRequest, UpdateInterfaceRequest, UpdateRoutesRequest, VolumeStatsRequest,
    WaitProcessRequest, WaitProcessResponse, WriteStreamRequest, WriteStreamResponse,
};
// The guest services (CopyFile, SetGuestDateTime, ReseedRandomDev, GetMetrics).
use hull_protocols::agent_ttrpc::AgentService;
use hull_protocols::csi::VolumeStatsResponse;
use hull_protocols::types::Interface;
use protobuf::well_known_types::empty::Empty;
use ttrpc::asynchronous::TtrpcContext;

use super::status::status;
use super::{container, cpu_mem, guest, guest_admin, network, oci, policy, sandbox, volume};
use crate::diagnostic::LogType;
use crate::error::AgentError;
use crate::fs::copy;
use crate::policy::PolicyGate;
use crate::sandbox::{OutputStream, Sandbox};
use crate::{entropy, guest_clock, iptables, metrics};

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
    "UpdateEphemeralMounts",
    "RemoveStaleVirtiofsShareMounts",
    "GetVolumeStats",
    "ResizeVolume",
    "AddSwap",
    "AddSwapPath",
    "CopyFile",
    "SetGuestDateTime",
    "ReseedRandomDev",
    "GetMetrics",
    "OnlineCPUMem",
    "MemHotplugByProbe",
    "MemAgentMemcgSet",
    "MemAgentCompactSet",
    "GetDiagnosticData",
    "GetIPTables",
    "SetIPTables",
    "SetPolicy",
];

/// The AgentService implementation.
pub struct AgentRpc {
    sandbox: Arc<Sandbox>,
    under_init: bool,
    metrics: metrics::Metrics,
    policy: Arc<PolicyGate>,
}

impl AgentRpc {
    /// Serves `sandbox`. `under_init` (the agent was started by hull-init) is reported
    /// to the host as `GetGuestDetails`' `init_daemon`.
    pub fn new(sandbox: Arc<Sandbox>, under_init: bool) -> Self {
        Self {
            sandbox,
            under_init,
            metrics: metrics::Metrics::new(),
            policy: Arc::default(),
        }
    }

    /// Enforces `policy` (every request but `SetPolicy` is checked by [`policy::guard`];
    /// `SetPolicy` replaces it).
    pub fn with_policy(self, policy: Arc<PolicyGate>) -> Self {
        Self { policy, ..self }
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
            .update_container(&req.container_id, resources.as_ref())
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

    async fn online_cpu_mem(
        &self,
        _ctx: &TtrpcContext,
        req: OnlineCPUMemRequest,
    ) -> ttrpc::Result<Empty> {
        let request = cpu_mem::online_request(&req);
        self.sandbox.cpu_mem().online(request).await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn mem_hotplug_by_probe(
        &self,
        _ctx: &TtrpcContext,
        req: MemHotplugByProbeRequest,
    ) -> ttrpc::Result<Empty> {
        let addresses = cpu_mem::probe_addresses(&req);
        self.sandbox.cpu_mem().probe(addresses).map_err(fail)?;
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

    async fn update_ephemeral_mounts(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateEphemeralMountsRequest,
    ) -> ttrpc::Result<Empty> {
        let updates = volume::ephemeral_updates(&req).map_err(fail)?;
        let storages = self.sandbox.storages();
        storages.update_ephemeral(&updates).await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn remove_stale_virtiofs_share_mounts(
        &self,
        _ctx: &TtrpcContext,
        _req: RemoveStaleVirtiofsShareMountsRequest,
    ) -> ttrpc::Result<Empty> {
        let storages = self.sandbox.storages();
        storages.remove_stale_share_mounts().await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn get_volume_stats(
        &self,
        _ctx: &TtrpcContext,
        req: VolumeStatsRequest,
    ) -> ttrpc::Result<VolumeStatsResponse> {
        let storages = self.sandbox.storages();
        let stats = storages.volume_stats(&req.volume_guest_path).await;
        Ok(volume::volume_stats_to_proto(&stats.map_err(fail)?))
    }

    async fn resize_volume(
        &self,
        _ctx: &TtrpcContext,
        req: ResizeVolumeRequest,
    ) -> ttrpc::Result<Empty> {
        let storages = self.sandbox.storages();
        let resized = storages.resize_volume(&req.volume_guest_path, req.size);
        resized.await.map_err(fail)?;
        Ok(Empty::new())
    }

    async fn add_swap(&self, _ctx: &TtrpcContext, req: AddSwapRequest) -> ttrpc::Result<Empty> {
        let devices = self.sandbox.storages().devices();
        crate::swap::add_swap_disk(devices, &req.PCIPath)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn mem_agent_memcg_set(
        &self,
        _ctx: &TtrpcContext,
        req: MemAgentMemcgConfig,
    ) -> ttrpc::Result<Empty> {
        let update = guest_admin::memcg_update(&req);
        self.sandbox.mem_agent().set_memcg(&update).map_err(fail)?;
        Ok(Empty::new())
    }

    async fn mem_agent_compact_set(
        &self,
        _ctx: &TtrpcContext,
        req: MemAgentCompactConfig,
    ) -> ttrpc::Result<Empty> {
        let update = guest_admin::compact_update(&req);
        self.sandbox
            .mem_agent()
            .set_compact(&update)
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn copy_file(&self, _ctx: &TtrpcContext, req: CopyFileRequest) -> ttrpc::Result<Empty> {
        let shared_dir = self.sandbox.storages().run_dir().join(copy::SHARED_DIR);
        let request = guest::copy_request(req);
        copy::copy_file_blocking(shared_dir, request)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }

    async fn add_swap_path(
        &self,
        _ctx: &TtrpcContext,
        req: AddSwapPathRequest,
    ) -> ttrpc::Result<Empty> {
        let root = self.sandbox.storages().root().await.map_err(fail)?;
        crate::swap::add_swap_path(&root, &req.path)
            .await
            .map_err(fail)?;
        Ok(Empty::new())
    }
    async fn set_guest_date_time(
        &self,
        _ctx: &TtrpcContext,
        req: SetGuestDateTimeRequest,
    ) -> ttrpc::Result<Empty> {
        let time = guest::wall_time(&req).map_err(fail)?;
        guest_clock::set(time).map_err(fail)?;
        Ok(Empty::new())
    }

    async fn reseed_random_dev(
        &self,
        _ctx: &TtrpcContext,
        req: ReseedRandomDevRequest,
    ) -> ttrpc::Result<Empty> {
        let device = Path::new(entropy::RANDOM_DEVICE);
        entropy::reseed(device, &req.data).map_err(fail)?;
        Ok(Empty::new())
    }

    async fn get_metrics(
        &self,
        _ctx: &TtrpcContext,
        _req: GetMetricsRequest,
    ) -> ttrpc::Result<Metrics> {
        Ok(guest::metrics_to_proto(self.metrics.gather()))
    }

    async fn get_diagnostic_data(
        &self,
        _ctx: &TtrpcContext,
        req: GetDiagnosticDataRequest,
    ) -> ttrpc::Result<GetDiagnosticDataResponse> {
        let data = match LogType::parse(&req.log_type).map_err(fail)? {
            LogType::TerminationLog => self.sandbox.termination_log(&req.container_id),
        };
        Ok(GetDiagnosticDataResponse {
            data: data.map_err(fail)?,
            ..Default::default()
        })
    }

    async fn get_ip_tables(
        &self,
        _ctx: &TtrpcContext,
        req: GetIPTablesRequest,
    ) -> ttrpc::Result<GetIPTablesResponse> {
        let family = guest_admin::ip_family(req.is_ipv6);
        Ok(GetIPTablesResponse {
            data: iptables::save(family).await.map_err(fail)?,
            ..Default::default()
        })
    }

    async fn set_ip_tables(
        &self,
        _ctx: &TtrpcContext,
        req: SetIPTablesRequest,
    ) -> ttrpc::Result<SetIPTablesResponse> {
        let family = guest_admin::ip_family(req.is_ipv6);
        Ok(SetIPTablesResponse {
            data: iptables::restore(family, req.data).await.map_err(fail)?,
            ..Default::default()
        })
    }

    async fn set_policy(&self, _ctx: &TtrpcContext, req: SetPolicyRequest) -> ttrpc::Result<Empty> {
        policy::set_policy(&self.policy, &req).map_err(fail)?;
        Ok(Empty::new())
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
