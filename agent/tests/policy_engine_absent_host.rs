//! A hull-agent built without the policy engine (the default build; cargo feature
//! `policy` off), on the host: `SetPolicy` answers UNIMPLEMENTED naming the method and the
//! agent that has it, an image policy stops the agent before it serves, and `--version`
//! says the engine is not built in. (`policy_host.rs` covers the agent with the engine.)

#![cfg(not(feature = "policy"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use hull_testkit::HostAgent;
use ttrpc::Code;

const AGENT: &str = env!("CARGO_BIN_EXE_hull-agent");

#[tokio::test]
async fn set_policy_is_unimplemented_and_says_which_agent_has_it() {
    let agent = HostAgent::start(AGENT);
    let client = agent.client().await;
    let err = client
        .set_policy("package agent_policy\ndefault ExecProcessRequest := false\n")
        .await
        .unwrap_err();
    assert_eq!(err.rpc_code(), Some(Code::UNIMPLEMENTED), "{err}");
    let message = err.rpc_message().unwrap_or_default();
    for needed in [
        "/grpc.AgentService/SetPolicy",
        "policy engine",
        "hull-agent-policy",
        "initrd-policy.img",
    ] {
        assert!(message.contains(needed), "no `{needed}` in: {message}");
    }
    // Nothing is enforced: the agent still answers everything else.
    client.list_interfaces().await.expect("ListInterfaces");
}

#[test]
fn an_image_policy_stops_the_agent_before_it_serves() {
    let refused = hull_testkit::agent::start_refused(
        Path::new(AGENT),
        "package agent_policy\ndefault ExecProcessRequest := false\n",
    );
    assert_eq!(refused.status.code(), Some(1), "{}", refused.status);
    assert!(!refused.listened, "the agent listened");
    for needed in [
        refused.policy_file.to_str().unwrap(),
        "refusing to serve without the image's agent policy",
        "built without the policy engine",
        "hull-agent-policy",
    ] {
        assert!(
            refused.stderr.contains(needed),
            "no `{needed}` in: {}",
            refused.stderr
        );
    }
}

#[test]
fn version_lists_no_features() {
    let out = Command::new(AGENT).arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        hull_common::agent_build::features_of(&text),
        Some(Vec::new()),
        "{text}"
    );
}
