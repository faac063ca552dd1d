//! End-to-end: a ttRPC server built from the generated service traits on a
//! Unix socket, driven through `AgentClient`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hull_protocols::agent::{
    AgentDetails, DestroySandboxRequest, GuestDetailsRequest, GuestDetailsResponse,
    ReadStreamRequest, ReadStreamResponse, RemoveContainerRequest, Routes, SignalProcessRequest,
    UpdateInterfaceRequest, UpdateRoutesRequest, WaitProcessRequest, WaitProcessResponse,
    WriteStreamRequest, WriteStreamResponse,
};
use hull_protocols::agent_ttrpc::{AgentService, create_agent_service};
use hull_protocols::health::{
    CheckRequest, HealthCheckResponse, VersionCheckResponse, health_check_response::ServingStatus,
};
use hull_protocols::health_ttrpc::{Health, create_health};
use hull_protocols::protobuf::well_known_types::empty::Empty;
use hull_protocols::ttrpc::{self, Code, r#async::TtrpcContext};
use hull_protocols::types::{Interface, Route};
use hull_protocols::{AgentAddress, AgentClient, ClientError, Stream};

struct FakeHealth;

#[hull_protocols::async_trait::async_trait]
impl Health for FakeHealth {
    async fn check(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<HealthCheckResponse> {
        let mut resp = HealthCheckResponse::new();
        resp.status = ServingStatus::SERVING.into();
        Ok(resp)
    }

    async fn version(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<VersionCheckResponse> {
        // A slow reply, to exercise the per-call timeout.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(VersionCheckResponse {
            grpc_version: "0.0.1".into(),
            agent_version: "test".into(),
            ..Default::default()
        })
    }
}

#[derive(Default)]
struct FakeAgent {
    stderr_reads: AtomicU32,
}

#[hull_protocols::async_trait::async_trait]
impl AgentService for FakeAgent {
    async fn get_guest_details(
        &self,
        _ctx: &TtrpcContext,
        req: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        // The convenience method must ask for both details.
        if !(req.mem_block_size && req.mem_hotplug_probe) {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                Code::INVALID_ARGUMENT,
                "expected mem_block_size and mem_hotplug_probe",
            )));
        }
        let mut details = AgentDetails::new();
        details.version = "1.2.3".into();
        details.init_daemon = true;
        details.storage_handlers = vec!["virtio-fs".into(), "blk".into()];
        let mut resp = GuestDetailsResponse::new();
        resp.mem_block_size_bytes = 128 << 20;
        resp.agent_details = Some(details).into();
        Ok(resp)
    }

    async fn destroy_sandbox(
        &self,
        _ctx: &TtrpcContext,
        _req: DestroySandboxRequest,
    ) -> ttrpc::Result<Empty> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            Code::UNIMPLEMENTED,
            "/grpc.AgentService/DestroySandbox is not implemented",
        )))
    }

    // The container calls answer from their fields, so the test sees each one arrive.
    async fn wait_process(
        &self,
        _ctx: &TtrpcContext,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        Ok(WaitProcessResponse {
            status: (req.container_id.len() * 10 + req.exec_id.len()) as i32,
            ..Default::default()
        })
    }

    async fn read_stdout(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        Ok(ReadStreamResponse {
            data: format!("{}/{}/{}", req.container_id, req.exec_id, req.len).into_bytes(),
            ..Default::default()
        })
    }

    /// Two chunks, then the end of the stream.
    async fn read_stderr(
        &self,
        _ctx: &TtrpcContext,
        _req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        let data = match self.stderr_reads.fetch_add(1, Ordering::SeqCst) {
            0 => "one ",
            1 => "two ",
            _ => "",
        };
        Ok(ReadStreamResponse {
            data: data.into(),
            ..Default::default()
        })
    }

    async fn update_interface(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateInterfaceRequest,
    ) -> ttrpc::Result<Interface> {
        req.interface.into_option().ok_or_else(|| {
            ttrpc::Error::RpcStatus(ttrpc::get_status(Code::INVALID_ARGUMENT, "no interface"))
        })
    }

    async fn update_routes(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        Ok(req.routes.into_option().unwrap_or_default())
    }

    async fn write_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: WriteStreamRequest,
    ) -> ttrpc::Result<WriteStreamResponse> {
        Ok(WriteStreamResponse {
            len: req.data.len() as u32,
            ..Default::default()
        })
    }

    async fn signal_process(
        &self,
        _ctx: &TtrpcContext,
        req: SignalProcessRequest,
    ) -> ttrpc::Result<Empty> {
        if req.container_id == "c1" && req.exec_id == "e1" && req.signal == 15 {
            Ok(Empty::new())
        } else {
            Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                Code::INVALID_ARGUMENT,
                format!("{req:?}"),
            )))
        }
    }

    async fn remove_container(
        &self,
        _ctx: &TtrpcContext,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<Empty> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            Code::NOT_FOUND,
            format!("container {} (timeout {})", req.container_id, req.timeout),
        )))
    }
}

struct Harness {
    _server: ttrpc::r#async::Server,
    addr: AgentAddress,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = AgentAddress::Unix(dir.path().join("agent.sock"));
    let mut server = ttrpc::r#async::Server::new()
        .bind(&addr.to_string())
        .expect("bind")
        .register_service(create_health(Arc::new(FakeHealth)))
        .register_service(create_agent_service(Arc::new(FakeAgent::default())));
    server.start().await.expect("start");
    Harness {
        _server: server,
        addr,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_round_trip() {
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");

    let health = client.check().await.expect("check");
    assert_eq!(health.status.enum_value(), Ok(ServingStatus::SERVING));

    let details = client.guest_details().await.expect("guest details");
    assert_eq!(details.mem_block_size_bytes, 128 << 20);
    assert_eq!(details.agent_details.version, "1.2.3");
    assert!(details.agent_details.init_daemon);
    assert_eq!(details.agent_details.storage_handlers, ["virtio-fs", "blk"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_calls_carry_their_fields() {
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    assert_eq!(client.wait_process("abc", "de").await.expect("wait"), 32);
    assert_eq!(
        client.read_stdout("c1", "e1", 4096).await.expect("read"),
        b"c1/e1/4096"
    );
    assert_eq!(
        client.write_stdin("c1", "", b"hello").await.expect("write"),
        5
    );
    client.signal_process("c1", "e1", 15).await.expect("signal");
    let err = client
        .remove_container("gone", 7)
        .await
        .expect_err("remove");
    assert_eq!(err.rpc_code(), Some(Code::NOT_FOUND));
    assert!(
        err.to_string().contains("container gone (timeout 7)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_status_is_kept() {
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let err = client.destroy_sandbox().await.expect_err("unimplemented");
    assert!(err.is_unimplemented(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "AgentService.DestroySandbox failed: UNIMPLEMENTED: /grpc.AgentService/DestroySandbox is not implemented"
    );
}

/// Answers every RPC with the generated default: NOT_FOUND, naming the method path.
struct Bare;

impl AgentService for Bare {}
impl Health for Bare {}

async fn start_bare_server() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = AgentAddress::Unix(dir.path().join("agent.sock"));
    let mut server = ttrpc::r#async::Server::new()
        .bind(&addr.to_string())
        .expect("bind")
        .register_service(create_health(Arc::new(Bare)))
        .register_service(create_agent_service(Arc::new(Bare)));
    server.start().await.expect("start");
    Harness {
        _server: server,
        addr,
        _dir: dir,
    }
}

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), ClientError>> + 'a>>;

fn call<'a, T>(f: impl Future<Output = Result<T, ClientError>> + 'a) -> Call<'a> {
    Box::pin(async move { f.await.map(drop) })
}

/// Every method of the typed client, with the method path it must reach.
fn every_call(client: &AgentClient) -> Vec<(&'static str, Call<'_>)> {
    vec![
        ("grpc.Health/Check", call(client.check())),
        ("grpc.Health/Version", call(client.version())),
        // sandbox
        (
            "grpc.AgentService/CreateSandbox",
            call(async { client.create_sandbox(&Default::default()).await }),
        ),
        (
            "grpc.AgentService/DestroySandbox",
            call(client.destroy_sandbox()),
        ),
        (
            "grpc.AgentService/GetGuestDetails",
            call(client.guest_details()),
        ),
        (
            "grpc.AgentService/SetPolicy",
            call(client.set_policy("package agent_policy")),
        ),
        (
            "grpc.AgentService/OnlineCPUMem",
            call(async { client.online_cpu_mem(&Default::default()).await }),
        ),
        (
            "grpc.AgentService/ReseedRandomDev",
            call(client.reseed_random_dev(b"seed")),
        ),
        (
            "grpc.AgentService/MemHotplugByProbe",
            call(client.mem_hotplug_by_probe(&[1 << 30])),
        ),
        (
            "grpc.AgentService/SetGuestDateTime",
            call(client.set_guest_date_time(1, 2)),
        ),
        ("grpc.AgentService/AddSwap", call(client.add_swap(&[2, 0]))),
        (
            "grpc.AgentService/AddSwapPath",
            call(client.add_swap_path("/swap")),
        ),
        (
            "grpc.AgentService/MemAgentMemcgSet",
            call(async { client.mem_agent_memcg_set(&Default::default()).await }),
        ),
        (
            "grpc.AgentService/MemAgentCompactSet",
            call(async { client.mem_agent_compact_set(&Default::default()).await }),
        ),
        // container
        (
            "grpc.AgentService/CreateContainer",
            call(async { client.create_container(&Default::default()).await }),
        ),
        (
            "grpc.AgentService/StartContainer",
            call(client.start_container("c1")),
        ),
        (
            "grpc.AgentService/RemoveContainer",
            call(client.remove_container("c1", 0)),
        ),
        (
            "grpc.AgentService/UpdateContainer",
            call(client.update_container("c1", Default::default())),
        ),
        (
            "grpc.AgentService/StatsContainer",
            call(client.stats_container("c1")),
        ),
        (
            "grpc.AgentService/PauseContainer",
            call(client.pause_container("c1")),
        ),
        (
            "grpc.AgentService/ResumeContainer",
            call(client.resume_container("c1")),
        ),
        (
            "grpc.AgentService/GetOOMEvent",
            call(client.get_oom_event()),
        ),
        // process
        (
            "grpc.AgentService/ExecProcess",
            call(async { client.exec_process(&Default::default()).await }),
        ),
        (
            "grpc.AgentService/SignalProcess",
            call(client.signal_process("c1", "e1", 9)),
        ),
        (
            "grpc.AgentService/WaitProcess",
            call(client.wait_process("c1", "e1")),
        ),
        (
            "grpc.AgentService/ReadStdout",
            call(client.read_stdout("c1", "e1", 1)),
        ),
        (
            "grpc.AgentService/ReadStderr",
            call(client.read_stderr("c1", "e1", 1)),
        ),
        (
            "grpc.AgentService/ReadStdout",
            call(client.read_to_end("c1", "e1", Stream::Stdout)),
        ),
        (
            "grpc.AgentService/ReadStderr",
            call(client.read_to_end("c1", "e1", Stream::Stderr)),
        ),
        (
            "grpc.AgentService/WriteStdin",
            call(client.write_stdin("c1", "e1", b"x")),
        ),
        (
            "grpc.AgentService/CloseStdin",
            call(client.close_stdin("c1", "e1")),
        ),
        (
            "grpc.AgentService/TtyWinResize",
            call(client.tty_win_resize("c1", "e1", 24, 80)),
        ),
        // network
        (
            "grpc.AgentService/UpdateInterface",
            call(client.update_interface(Interface::new())),
        ),
        (
            "grpc.AgentService/UpdateRoutes",
            call(client.update_routes(Vec::new())),
        ),
        (
            "grpc.AgentService/ListInterfaces",
            call(client.list_interfaces()),
        ),
        ("grpc.AgentService/ListRoutes", call(client.list_routes())),
        (
            "grpc.AgentService/AddARPNeighbors",
            call(client.add_arp_neighbors(Vec::new())),
        ),
        (
            "grpc.AgentService/GetIPTables",
            call(client.get_ip_tables(false)),
        ),
        (
            "grpc.AgentService/SetIPTables",
            call(client.set_ip_tables(true, b"*filter")),
        ),
        // storage
        (
            "grpc.AgentService/UpdateEphemeralMounts",
            call(client.update_ephemeral_mounts(Vec::new())),
        ),
        (
            "grpc.AgentService/RemoveStaleVirtiofsShareMounts",
            call(client.remove_stale_virtiofs_share_mounts()),
        ),
        (
            "grpc.AgentService/GetVolumeStats",
            call(client.get_volume_stats("/v")),
        ),
        (
            "grpc.AgentService/ResizeVolume",
            call(client.resize_volume("/v", 1 << 20)),
        ),
        (
            "grpc.AgentService/CopyFile",
            call(async { client.copy_file(&Default::default()).await }),
        ),
        // misc
        ("grpc.AgentService/GetMetrics", call(client.get_metrics())),
        (
            "grpc.AgentService/GetDiagnosticData",
            call(client.get_diagnostic_data("agent", "")),
        ),
    ]
}

/// The RPCs of `service` in a `.proto` file, in order.
fn rpcs_in(proto: &str, service: &str) -> Vec<String> {
    let body = proto
        .split(&format!("service {service} {{"))
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_else(|| panic!("service {service} in the .proto"));
    body.lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .map(|rpc| rpc.split('(').next().unwrap_or_default().trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_reaches_its_rpc_and_keeps_the_status() {
    // The generated default handler answers NOT_FOUND, "/<service>/<method> is not
    // supported": each call shows which method it reached.
    let h = start_bare_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let mut reached = Vec::new();
    for (path, call) in every_call(&client) {
        let err = call.await.expect_err(path);
        assert_eq!(err.rpc_code(), Some(Code::NOT_FOUND), "{path}: {err}");
        assert_eq!(
            err.rpc_message(),
            Some(format!("/{path} is not supported").as_str()),
            "{path}"
        );
        let (service, method) = path.split_once('/').expect("service/method");
        let short = format!("{}.{method}", service.trim_start_matches("grpc."));
        assert_eq!(err.method(), Some(short.as_str()), "{path}");
        assert!(
            err.to_string()
                .starts_with(&format!("{short} failed: NOT_FOUND: ")),
            "{err}"
        );
        reached.push(path.to_string());
    }
    // Every RPC of both services has a method.
    for (file, service) in [
        (include_str!("../protos/agent.proto"), "AgentService"),
        (include_str!("../protos/health.proto"), "Health"),
    ] {
        let rpcs = rpcs_in(file, service);
        assert!(rpcs.len() >= 2, "{service}: {rpcs:?}");
        for rpc in rpcs {
            let path = format!("grpc.{service}/{rpc}");
            assert!(reached.contains(&path), "no client method for {path}");
        }
    }
    reached.sort();
    reached.dedup();
    assert_eq!(
        reached.len(),
        42 + 2,
        "AgentService's 42 RPCs and Health's 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_calls_take_what_the_request_carries() {
    // The generated default answers before reading fields; a server that echoes shows
    // that the `From` conversions fill the request.
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let eth0 = Interface {
        name: "eth0".into(),
        mtu: 1400,
        ..Default::default()
    };
    assert_eq!(
        client.update_interface(eth0.clone()).await.expect("update"),
        eth0
    );
    let routes = vec![Route {
        dest: "10.0.0.0/8".into(),
        device: "eth0".into(),
        ..Default::default()
    }];
    assert_eq!(
        client.update_routes(routes.clone()).await.expect("routes"),
        routes
    );
    let err = client
        .update_interface(UpdateInterfaceRequest::new())
        .await
        .expect_err("a request without an interface");
    assert_eq!(err.rpc_code(), Some(Code::INVALID_ARGUMENT), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_to_end_collects_a_stream_until_an_empty_read() {
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let captured = client
        .read_to_end("c1", "e1", Stream::Stderr)
        .await
        .expect("read to end");
    assert_eq!(captured.text(), "one two ");
    assert_eq!(captured.reads, 3);
    assert!(captured.first_byte_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_timeout() {
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect")
        .with_timeout(Duration::from_millis(100));
    let err = client.version().await.expect_err("timeout");
    match &err {
        ClientError::Timeout { method, timeout } => {
            assert_eq!(*method, "Health.Version");
            assert_eq!(*timeout, Duration::from_millis(100));
        }
        // The server may also report the deadline itself.
        ClientError::Rpc { code, .. } => assert_eq!(*code, Code::DEADLINE_EXCEEDED),
        other => panic!("unexpected {other:?}"),
    }
    // A generous timeout lets it through.
    let client = client.with_timeout(Duration::from_secs(5));
    let v = client.version().await.expect("version");
    assert_eq!(v.agent_version, "test");
}
