//! End-to-end: a ttRPC server built from the generated service traits on a
//! Unix socket, driven through `AgentClient`.

use std::sync::Arc;
use std::time::Duration;

use hull_protocols::agent::{
    AgentDetails, DestroySandboxRequest, GuestDetailsRequest, GuestDetailsResponse,
    ReadStreamRequest, ReadStreamResponse, RemoveContainerRequest, SignalProcessRequest,
    WaitProcessRequest, WaitProcessResponse, WriteStreamRequest, WriteStreamResponse,
};
use hull_protocols::agent_ttrpc::{AgentService, create_agent_service};
use hull_protocols::health::{
    CheckRequest, HealthCheckResponse, VersionCheckResponse, health_check_response::ServingStatus,
};
use hull_protocols::health_ttrpc::{Health, create_health};
use hull_protocols::protobuf::well_known_types::empty::Empty;
use hull_protocols::ttrpc::{self, Code, r#async::TtrpcContext};
use hull_protocols::{AgentAddress, AgentClient, ClientError};

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

struct FakeAgent;

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
        .register_service(create_agent_service(Arc::new(FakeAgent)));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_without_handler_use_generated_default() {
    // The generated trait's default body answers NOT_FOUND ("... is not
    // supported"); servers must override every method they want to map to
    // UNIMPLEMENTED.
    let h = start_server().await;
    let client = AgentClient::connect(&h.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let req = Default::default();
    let err = client
        .call_agent("AgentService.StartContainer", |agent, ctx| {
            agent.start_container(ctx, &req)
        })
        .await
        .expect_err("default handler");
    assert_eq!(err.rpc_code(), Some(Code::NOT_FOUND), "{err}");
    assert!(
        err.to_string()
            .starts_with("AgentService.StartContainer failed: NOT_FOUND: "),
        "{err}"
    );
    // The same through the raw generated client.
    let raw = client
        .agent()
        .start_container(
            hull_protocols::client::default_context(Duration::from_secs(5)),
            &req,
        )
        .await
        .map_err(|e| ClientError::from_ttrpc("AgentService.StartContainer", client.timeout(), e))
        .expect_err("default handler");
    assert_eq!(raw.rpc_code(), Some(Code::NOT_FOUND));
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
