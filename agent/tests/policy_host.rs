//! The agent policy on the host: the `hull-agent` binary on a Unix socket, given Rego
//! policies by `SetPolicy` or by its default policy file, driven over ttRPC.
//!
//! The container case needs root and busybox (see `containers_host.rs`); the others
//! need nothing. Built with the `policy` feature only (`cargo test --workspace` has it:
//! hull-ctl's tests enable it); `policy_engine_absent_host.rs` covers the agent without it.

#![cfg(feature = "policy")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use hull_protocols::client::{AgentClient, ClientError};
use hull_protocols::oci;
use hull_testkit::rootfs::require_containers;
use hull_testkit::{BusyboxRootfs, HostAgent, cgroup_root, container_spec, unique};
use ttrpc::Code;

const ALLOW_ALL: &str = "package agent_policy\ndefault AllowRequestsFailingPolicy := false\n\
    ExecProcessRequest := true\nCreateContainerRequest := true\nSetPolicyRequest := true\n\
    ListInterfacesRequest := true\nStartContainerRequest := true\nWaitProcessRequest := true\n\
    ReadStreamRequest := true\nRemoveContainerRequest := true\n";

const DENY_EXEC: &str = r#"package agent_policy
default ExecProcessRequest := false
default ListInterfacesRequest := true
default ListRoutesRequest := true
default SetPolicyRequest := true
"#;

/// CreateContainer only for the commands of the policy's data.
const ALLOW_LISTED_COMMANDS: &str = r#"package agent_policy
policy_data := {"commands": [["echo", "allowed"], ["true"]]}
default CreateContainerRequest := false
CreateContainerRequest if {
    some command in policy_data.commands
    input.OCI.Process.Args == command
}
default StartContainerRequest := true
default WaitProcessRequest := true
default ReadStreamRequest := true
default RemoveContainerRequest := true
default SetPolicyRequest := true
"#;

const LOCKED: &str = r#"package agent_policy
default SetPolicyRequest := false
default ExecProcessRequest := false
default ListInterfacesRequest := true
"#;

#[test]
fn version_lists_the_policy_feature() {
    let out = Command::new(env!("CARGO_BIN_EXE_hull-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        hull_common::agent_build::features_of(&text),
        Some(vec!["policy".to_string()]),
        "{text}"
    );
}

fn start_agent() -> HostAgent {
    HostAgent::start(env!("CARGO_BIN_EXE_hull-agent"))
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> Option<Code> {
    match result {
        Ok(_) => None,
        Err(e) => Some(e.rpc_code().unwrap_or_else(|| panic!("not a status: {e}"))),
    }
}

/// An exec into a container that does not exist: NOT_FOUND when the policy lets it
/// through, PERMISSION_DENIED when not.
fn exec_request() -> ExecProcessRequest {
    ExecProcessRequest {
        container_id: "nosuch".into(),
        exec_id: "e1".into(),
        process: Some(oci::Process {
            Args: vec!["/bin/true".into()],
            Cwd: "/".into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

async fn assert_exec_denied(client: &AgentClient) {
    let err = client.exec_process(&exec_request()).await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(Code::PERMISSION_DENIED), "{err}");
    let message = err.rpc_message().unwrap_or_default();
    assert!(
        message.contains("ExecProcessRequest"),
        "the denial names the rule: {message}"
    );
}

#[tokio::test]
async fn without_a_policy_and_with_an_allow_all_one_everything_goes_through() {
    let agent = start_agent();
    let client = agent.client().await;
    assert_eq!(
        code(client.exec_process(&exec_request()).await),
        Some(Code::NOT_FOUND)
    );
    client.set_policy(ALLOW_ALL).await.expect("SetPolicy");
    assert_eq!(
        code(client.exec_process(&exec_request()).await),
        Some(Code::NOT_FOUND)
    );
    client.list_interfaces().await.expect("ListInterfaces");
    // Replaceable again: the allow-all policy allows SetPolicy.
    client.set_policy(DENY_EXEC).await.expect("SetPolicy");
    assert_exec_denied(&client).await;
}

#[tokio::test]
async fn a_policy_denying_exec_refuses_it_and_lets_other_calls_through() {
    let agent = start_agent();
    let client = agent.client().await;
    client.set_policy(DENY_EXEC).await.expect("SetPolicy");
    assert_exec_denied(&client).await;
    client.list_interfaces().await.expect("ListInterfaces");
    client.list_routes().await.expect("ListRoutes");
    // A rule the policy does not define denies too.
    let err = client.remove_container("nosuch", 1).await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(Code::PERMISSION_DENIED), "{err}");
}

#[tokio::test]
async fn a_malformed_policy_is_invalid_and_the_previous_one_stays() {
    let agent = start_agent();
    let client = agent.client().await;
    client.set_policy(DENY_EXEC).await.expect("SetPolicy");
    for malformed in [
        "package agent_policy\nExecProcessRequest if {",
        "package elsewhere\ndefault ExecProcessRequest := true",
        "not rego at all",
    ] {
        let err = client.set_policy(malformed).await.unwrap_err();
        assert_eq!(
            err.rpc_code(),
            Some(Code::INVALID_ARGUMENT),
            "{malformed}: {err}"
        );
        assert_exec_denied(&client).await;
    }
}

#[tokio::test]
async fn a_policy_denying_set_policy_can_no_longer_be_replaced() {
    let agent = start_agent();
    let client = agent.client().await;
    client.set_policy(LOCKED).await.expect("SetPolicy");
    let err = client.set_policy(ALLOW_ALL).await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(Code::PERMISSION_DENIED), "{err}");
    assert!(
        err.rpc_message()
            .unwrap_or_default()
            .contains("SetPolicyRequest"),
        "{err}"
    );
    assert_exec_denied(&client).await;
    client.list_interfaces().await.expect("ListInterfaces");
}

#[tokio::test]
async fn the_default_policy_file_is_in_force_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default-policy.rego");
    std::fs::write(&file, DENY_EXEC).unwrap();
    let agent = HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .env("HULL_AGENT_POLICY_FILE", &file)
        .start();
    let client = agent.client().await;
    assert_exec_denied(&client).await;
    client.list_interfaces().await.expect("ListInterfaces");
}

#[test]
fn a_malformed_default_policy_file_stops_the_agent_before_it_serves() {
    let refused = hull_testkit::agent::start_refused(
        Path::new(env!("CARGO_BIN_EXE_hull-agent")),
        "package agent_policy\nExecProcessRequest if {",
    );
    assert!(!refused.status.success(), "{}", refused.status);
    assert!(!refused.listened, "the agent listened");
    assert!(refused.stderr.contains("policy"), "{}", refused.stderr);
}

#[tokio::test]
async fn create_container_runs_only_the_commands_the_policy_data_lists() {
    require_containers();
    let agent = HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .run_dir("bundles")
        .env("HULL_AGENT_CGROUP_ROOT", cgroup_root())
        .start();
    let client = agent.client().await.with_timeout(Duration::from_secs(60));
    client
        .set_policy(ALLOW_LISTED_COMMANDS)
        .await
        .expect("SetPolicy");
    let rootfs = BusyboxRootfs::new();
    let create = |id: &str, args: &[&str]| CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: Some(container_spec(
            rootfs.path(),
            &format!("/hull-test/{id}"),
            args,
            &["mount", "pid"],
        ))
        .into(),
        ..Default::default()
    };

    let denied = unique("denied");
    let err = client
        .create_container(&create(&denied, &["sh", "-c", "echo escaped"]))
        .await
        .unwrap_err();
    assert_eq!(err.rpc_code(), Some(Code::PERMISSION_DENIED), "{err}");
    // Nothing was created.
    let err = client.start_container(&denied).await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(Code::NOT_FOUND), "{err}");

    let allowed = unique("allowed");
    client
        .create_container(&create(&allowed, &["echo", "allowed"]))
        .await
        .expect("CreateContainer of a listed command");
    client
        .start_container(&allowed)
        .await
        .expect("StartContainer");
    let out = client
        .read_to_end(&allowed, "", hull_protocols::client::Stream::Stdout)
        .await
        .expect("ReadStdout");
    assert_eq!(String::from_utf8_lossy(&out.bytes), "allowed\n");
    assert_eq!(
        client
            .wait_process(&allowed, "")
            .await
            .expect("WaitProcess"),
        0
    );
    client
        .remove_container(&allowed, 10)
        .await
        .expect("RemoveContainer");

    // As Kata's agent: a policy denying ReadStreamRequest redacts the output, it does
    // not fail the read.
    client
        .set_policy(&ALLOW_LISTED_COMMANDS.replace(
            "default ReadStreamRequest := true",
            "default ReadStreamRequest := false",
        ))
        .await
        .expect("SetPolicy");
    let redacted = unique("redacted");
    client
        .create_container(&create(&redacted, &["echo", "allowed"]))
        .await
        .expect("CreateContainer");
    client
        .start_container(&redacted)
        .await
        .expect("StartContainer");
    assert_eq!(
        client
            .wait_process(&redacted, "")
            .await
            .expect("WaitProcess"),
        0
    );
    let out = client
        .read_stream(&redacted, "", hull_protocols::client::Stream::Stdout, 4096)
        .await
        .expect("ReadStdout answers, empty");
    assert!(out.is_empty(), "the output was not redacted: {out:?}");
    client
        .remove_container(&redacted, 10)
        .await
        .expect("RemoveContainer");
}
