//! Runs the `hull-ctl` binary against the real agent, served in-process on a Unix socket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hull_agent::server::Ending;
use hull_testkit::InProcessAgent;
use hull_testkit::cli::{self, stderr, stdout};

const HULL_CTL: &str = env!("CARGO_BIN_EXE_hull-ctl");

async fn hull_ctl(args: &[&str]) -> Output {
    cli::run_async(HULL_CTL, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_version() {
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let out = hull_ctl(&["--addr", &addr, "check"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "status: SERVING\n");

    let out = hull_ctl(&["--addr", &addr, "--json", "version"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "agent_version": env!("CARGO_PKG_VERSION"),
            "grpc_version": hull_agent::rpc::API_VERSION,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_details_as_json() {
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let out = hull_ctl(&["--addr", &addr, "--json", "guest-details"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let expected_block = std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes")
        .map(|s| u64::from_str_radix(s.trim(), 16).expect("hex"))
        .unwrap_or(0);
    assert_eq!(v["mem_block_size_bytes"], expected_block);
    assert_eq!(v["agent_details"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["agent_details"]["init_daemon"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_sandbox_ends_the_agent() {
    let mut agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let out = hull_ctl(&["--addr", &addr, "destroy-sandbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let ending = agent.ended(Duration::from_secs(10)).await.expect("serve");
    assert_eq!(ending, Ending::SandboxDestroyed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_agent_names_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("unix://{}", dir.path().join("none.sock").display());
    let started = Instant::now();
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
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(HULL_CTL);
        command.arg("check").env("HULL_AGENT_ADDR", addr);
        cli::output(command)
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_policy_sends_the_file_and_the_agent_enforces_it() {
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.rego");
    std::fs::write(
        &policy,
        "package agent_policy\ndefault GuestDetailsRequest := false\ndefault SetPolicyRequest := true\n",
    )
    .expect("write policy");
    let policy = policy.display().to_string();
    let out = hull_ctl(&["--addr", &addr, "--json", "set-policy", &policy]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(v["policy"], policy.as_str());
    let out = hull_ctl(&["--addr", &addr, "guest-details"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("GuestDetailsRequest is blocked by policy"),
        "{}",
        stderr(&out)
    );
    let malformed = dir.path().join("malformed.rego");
    std::fs::write(&malformed, "package agent_policy\nx if {").expect("write policy");
    let out = hull_ctl(&[
        "--addr",
        &addr,
        "set-policy",
        &malformed.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("malformed"), "{}", stderr(&out));
}
