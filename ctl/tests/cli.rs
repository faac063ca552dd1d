//! Runs the `hull-ctl` binary against an in-process fake agent.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use hull_protocols::agent::{GuestDetailsRequest, GuestDetailsResponse};
use hull_protocols::agent_ttrpc::{AgentService, create_agent_service};
use hull_protocols::health::{
    CheckRequest, HealthCheckResponse, VersionCheckResponse, health_check_response::ServingStatus,
};
use hull_protocols::health_ttrpc::{Health, create_health};
use hull_protocols::ttrpc::{self, Code, r#async::TtrpcContext};

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
        Ok(VersionCheckResponse {
            grpc_version: "0.0.1".into(),
            agent_version: "9.9.9".into(),
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
        _req: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            Code::UNIMPLEMENTED,
            "/grpc.AgentService/GetGuestDetails is not implemented",
        )))
    }
}

struct Agent {
    _server: ttrpc::r#async::Server,
    addr: String,
    _dir: tempfile::TempDir,
}

async fn start_agent() -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("unix://{}", dir.path().join("agent.sock").display());
    let mut server = ttrpc::r#async::Server::new()
        .bind(&addr)
        .expect("bind")
        .register_service(create_health(Arc::new(FakeHealth)))
        .register_service(create_agent_service(Arc::new(FakeAgent)));
    server.start().await.expect("start");
    Agent {
        _server: server,
        addr,
        _dir: dir,
    }
}

async fn hull_ctl(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hull-ctl"))
            .args(&args)
            .env_remove("HULL_AGENT_ADDR")
            .output()
            .expect("run hull-ctl")
    })
    .await
    .expect("join")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_version() {
    let agent = start_agent().await;
    let out = hull_ctl(&["--addr", &agent.addr, "check"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "status: SERVING\n");

    let out = hull_ctl(&["--addr", &agent.addr, "--json", "version"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"agent_version": "9.9.9", "grpc_version": "0.0.1"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_rpc_is_a_one_line_error() {
    let agent = start_agent().await;
    let out = hull_ctl(&["--addr", &agent.addr, "guest-details"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: AgentService.GetGuestDetails failed: UNIMPLEMENTED: /grpc.AgentService/GetGuestDetails is not implemented\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_agent_names_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("unix://{}", dir.path().join("none.sock").display());
    let started = std::time::Instant::now();
    let out = hull_ctl(&["--addr", &addr, "--connect-timeout", "0.3", "check"]).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: could not connect to agent at "),
        "{err}"
    );
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_from_environment() {
    let agent = start_agent().await;
    let addr = agent.addr.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hull-ctl"))
            .arg("check")
            .env("HULL_AGENT_ADDR", addr)
            .output()
            .expect("run hull-ctl")
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
}
