//! The sandbox and container commands of `hull-ctl` against the real agent, served
//! in-process on a Unix socket: what can run on a host without a guest. A container's
//! whole life (the agent re-executing itself as the container helper) needs the agent
//! binary; the VM test in `ctl/tests/vm.rs` covers it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Output;

use hull_testkit::InProcessAgent;
use hull_testkit::cli::{self, stderr, stdout};

/// hull-ctl `--addr` the agent, with `args`.
async fn hull_ctl(agent: &InProcessAgent, args: &[&str]) -> Output {
    let addr = agent.address().to_string();
    let all = [&["--addr", addr.as_str()][..], args].concat();
    cli::run_async(env!("CARGO_BIN_EXE_hull-ctl"), &all).await
}

/// Exits 1 with one `error:` line that contains every one of `texts`.
fn fails_with(out: &Output, texts: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for text in texts {
        assert!(err.contains(text), "{text:?} not in {err}");
    }
}

fn write_bundle(dir: &Path, id: &str) -> PathBuf {
    let bundle = dir.join(id);
    std::fs::create_dir_all(&bundle).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["uname", "-a"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    bundle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sandbox_once_then_refused() {
    let agent = InProcessAgent::start().await;
    let out = hull_ctl(&agent, &["--json", "create-sandbox", "--sandbox-id", "sb1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"sandbox_id": "sb1", "hostname": "", "storages": []})
    );
    let out = hull_ctl(&agent, &["create-sandbox"]).await;
    fails_with(&out, &["CreateSandbox", "sb1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_fs_is_asked_for_at_katas_mount_point() {
    // This agent's directory is a temporary one, so Kata's mount point for the share is
    // refused, naming it: the request carried the storage.
    let agent = InProcessAgent::start().await;
    let out = hull_ctl(&agent, &["create-sandbox", "--shared-fs"]).await;
    fails_with(
        &out,
        &[
            "CreateSandbox",
            "INVALID_ARGUMENT",
            "/run/kata-containers/shared/containers/",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_commands_name_what_is_wrong() {
    let agent = InProcessAgent::start().await;
    for (args, texts) in [
        (
            &["start", "nope"][..],
            &["StartContainer", "NOT_FOUND", "nope"][..],
        ),
        (&["wait", "nope"], &["WaitProcess", "NOT_FOUND", "nope"]),
        (
            &["wait", "nope", "e1"],
            &["WaitProcess", "NOT_FOUND", "nope"],
        ),
        (&["signal", "nope", "TERM"], &["SignalProcess", "NOT_FOUND"]),
        (
            &["signal", "nope", "e1", "KILL"],
            &["SignalProcess", "NOT_FOUND"],
        ),
        (&["stats", "nope"], &["StatsContainer", "NOT_FOUND", "nope"]),
        (
            &["remove", "nope"],
            &["RemoveContainer", "NOT_FOUND", "nope"],
        ),
        (
            &["exec", "nope", "e1", "--", "true"],
            &["ExecProcess", "NOT_FOUND", "nope"],
        ),
        (
            &["signal", "nope", "TERMINATE"],
            &["unknown signal \"TERMINATE\""],
        ),
    ] {
        let out = hull_ctl(&agent, args).await;
        fails_with(&out, texts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_read_on_the_host_and_their_rootfs_looked_for_in_the_guest() {
    let agent = InProcessAgent::start().await;
    let bundles = agent.dir().join("bundles");
    let missing = bundles.join("absent").display().to_string();
    let out = hull_ctl(&agent, &["create-container", "c1", "--bundle", &missing]).await;
    fails_with(&out, &["absent/config.json"]);

    // A good bundle, but the guest (here: this host) has no rootfs where it is expected.
    let bundle = write_bundle(&bundles, "c1");
    let bundle = bundle.display().to_string();
    let out = hull_ctl(&agent, &["create-container", "c1", "--bundle", &bundle]).await;
    fails_with(
        &out,
        &[
            "CreateContainer",
            "INVALID_ARGUMENT",
            "/run/kata-containers/shared/containers/c1/rootfs",
        ],
    );
    let out = hull_ctl(
        &agent,
        &[
            "run",
            "c1",
            "--bundle",
            &bundle,
            "--guest-rootfs",
            "/nonexistent/rootfs",
        ],
    )
    .await;
    fails_with(&out, &["CreateContainer", "/nonexistent/rootfs"]);
    // Nothing was left behind: the id is free.
    let out = hull_ctl(&agent, &["stats", "c1"]).await;
    fails_with(&out, &["NOT_FOUND"]);
}
