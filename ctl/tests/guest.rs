//! `copy-file`, `metrics`, `reseed` and `set-time` of the `hull-ctl` binary against the
//! real agent served in-process (its run directory a temporary one). Nothing here moves
//! this host's clock or feeds its RNG: those run in the VM test (tests/tests/guest_methods.rs);
//! here only their refusals, which the agent answers before touching anything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;

use hull_testkit::InProcessAgent;
use hull_testkit::cli::{self, stderr, stdout};

const HULL_CTL: &str = env!("CARGO_BIN_EXE_hull-ctl");
const SHARED: &str = "/run/kata-containers/shared/containers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_file_copies_a_tree_into_the_shared_directory() {
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let local = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..(3 << 20) / 2).map(|i| (i % 253) as u8).collect();
    std::fs::create_dir(local.path().join("conf")).unwrap();
    std::fs::write(local.path().join("conf/big"), &big).unwrap();
    std::fs::write(local.path().join("conf/small"), b"small").unwrap();
    std::fs::set_permissions(
        local.path().join("conf/small"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("conf/small", local.path().join("link")).unwrap();

    // The in-process agent's run directory stands for /run/kata-containers.
    let guest_path = format!("{SHARED}/vol");
    let shared = agent.dir().join("run/shared/containers/vol");
    let out = cli::run_async(
        HULL_CTL,
        &[
            "--addr",
            &addr,
            "--json",
            "copy-file",
            "-r",
            local.path().to_str().unwrap(),
            &shared.display().to_string(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The root, conf, big (2 chunks), small, link.
    assert_eq!(report["files"], 5, "{report}");
    assert_eq!(report["requests"], 6, "{report}");
    assert_eq!(std::fs::read(shared.join("conf/big")).unwrap(), big);
    assert_eq!(std::fs::read(shared.join("link")).unwrap(), b"small");
    let mode = std::fs::metadata(shared.join("conf/small"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A path outside the shared directory: refused, named, nothing written.
    let out = cli::run_async(
        HULL_CTL,
        &[
            "--addr",
            &addr,
            "copy-file",
            local.path().join("link").to_str().unwrap(),
            &guest_path,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    assert!(err.contains(&guest_path), "{err}");
    let escape = format!(
        "{}/../escape",
        agent.dir().join("run/shared/containers").display()
    );
    let out = cli::run_async(
        HULL_CTL,
        &[
            "--addr",
            &addr,
            "copy-file",
            local.path().join("link").to_str().unwrap(),
            &escape,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("'..' is not allowed"),
        "{}",
        stderr(&out)
    );
    assert!(!agent.dir().join("run/shared/escape").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_print_the_prometheus_text() {
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let out = cli::run_async(HULL_CTL, &["--addr", &addr, "metrics"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("# TYPE kata_agent_scrape_count counter\n"),
        "{text}"
    );
    assert!(
        text.contains("kata_guest_meminfo{item=\"mem_total\"} "),
        "{text}"
    );
    let out = cli::run_async(HULL_CTL, &["--addr", &addr, "--json", "metrics"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let text = json["metrics"].as_str().unwrap();
    assert!(text.contains("kata_agent_scrape_count 2\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_reseed_and_set_time_are_reported() {
    let agent = InProcessAgent::start().await;
    let addr = agent.address().to_string();
    let out = cli::run_async(HULL_CTL, &["--addr", &addr, "reseed", "--bytes", "0"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("at least one byte"),
        "{err}"
    );
    let out = cli::run_async(HULL_CTL, &["--addr", &addr, "set-time", "--", "-10"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("before the epoch"),
        "{err}"
    );
    // The agent serves on.
    let out = cli::run_async(HULL_CTL, &["--addr", &addr, "check"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}
