//! `hull-ctl` driving a real guest by hand, as its README shows: create-sandbox with the
//! virtio-fs share, then run, create-container/start/exec/stats/signal/wait/remove on
//! busybox bundles in that share, and destroy-sandbox powering the VM off. The guest
//! comes from the e2e harness (needs `just artifacts`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Output;

use anyhow::{Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::{ContainerSpec, kernel_release};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::VmConfig;
use hull_testkit::cli::{self, text};

/// hull-ctl `--addr address` with `args`.
async fn hull_ctl(address: &str, args: &[&str]) -> Output {
    let all = [&["--addr", address][..], args].concat();
    cli::run_async(env!("CARGO_BIN_EXE_hull-ctl"), &all).await
}

/// Runs hull-ctl, which must exit with `code`; answers its stdout.
async fn expect(address: &str, args: &[&str], code: i32) -> Result<String> {
    let out = hull_ctl(address, args).await;
    ensure!(
        out.status.code() == Some(code),
        "hull-ctl {args:?} exited {:?}, not {code}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// Lays out a busybox bundle for `id` in the share with `spec` as its config.json.
fn bundle(guest: &SandboxGuest, id: &str, spec: &ContainerSpec) -> Result<String> {
    guest.busybox_rootfs(id)?;
    spec.write_config_json(guest.share(), id)?;
    Ok(bundle_path(guest.share(), id))
}

fn bundle_path(share: &Path, id: &str) -> String {
    share.join(id).display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn hull_ctl_drives_a_guest_by_hand() -> Result<()> {
    let artifacts = GuestArtifacts::locate()?;
    let release = kernel_release(&artifacts.kernel)?;
    let guest = SandboxGuest::boot_without_sandbox(VmConfig::new(artifacts)).await?;
    let addr = guest.vm().agent_address().to_string();
    let addr = addr.as_str();

    let created = expect(
        addr,
        &[
            "--json",
            "create-sandbox",
            "--shared-fs",
            "--hostname",
            "by-hand",
        ],
        0,
    )
    .await?;
    let created: serde_json::Value = serde_json::from_str(&created)?;
    ensure!(
        created["storages"] == serde_json::json!(["/run/kata-containers/shared/containers/"]),
        "{created}"
    );

    // run: the output streamed, the container's status as hull-ctl's.
    let one = bundle(
        &guest,
        "one",
        &ContainerSpec::shell("uname -r; hostname; echo to-stderr >&2; exit 7"),
    )?;
    let out = hull_ctl(addr, &["run", "one", "--bundle", &one, "--rm"]).await;
    ensure!(out.status.code() == Some(7), "run: {out:?}");
    ensure!(
        text(&out.stdout) == format!("{release}\nby-hand\n"),
        "run's stdout: {:?}",
        text(&out.stdout)
    );
    ensure!(text(&out.stderr) == "to-stderr\n", "run's stderr: {out:?}");
    // --rm removed it.
    expect(addr, &["stats", "one"], 1).await?;

    // The same with --json: collected into the report.
    let two = bundle(&guest, "two", &ContainerSpec::new(["echo", "collected"]))?;
    let report = expect(addr, &["--json", "run", "two", "--bundle", &two], 0).await?;
    let report: serde_json::Value = serde_json::from_str(&report)?;
    ensure!(
        report["exit_status"] == 0 && report["stdout"] == "collected\n",
        "{report}"
    );
    expect(addr, &["remove", "two"], 0).await?;

    // Step by step.
    let three = bundle(&guest, "three", &ContainerSpec::new(["sleep", "600"]))?;
    let created = expect(addr, &["create-container", "three", "--bundle", &three], 0).await?;
    ensure!(created == "container three created\n", "{created:?}");
    expect(addr, &["start", "three"], 0).await?;
    let exec = expect(
        addr,
        &[
            "exec",
            "three",
            "e1",
            "--",
            "sh",
            "-c",
            "echo from-exec; exit 3",
        ],
        3,
    )
    .await?;
    ensure!(exec == "from-exec\n", "{exec:?}");
    let stats = expect(addr, &["--json", "stats", "three"], 0).await?;
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    ensure!(
        stats["pids_current"].as_u64().is_some_and(|n| n >= 1),
        "{stats}"
    );
    expect(addr, &["signal", "three", "KILL"], 0).await?;
    let waited = expect(addr, &["wait", "three"], 0).await?;
    ensure!(waited == "exit_status: 137\n", "{waited:?}");
    expect(addr, &["remove", "three"], 0).await?;

    // The guest administration commands (the default initrd has no iptables).
    for (args, said) in [
        (
            &["iptables", "get"][..],
            "iptables-save is not in this guest",
        ),
        (
            &["iptables", "get", "--ipv6"][..],
            "ip6tables-save is not in this guest",
        ),
        (
            &["mem-agent-compact", "--compact-order", "11"][..],
            "compact_order",
        ),
        (&["diagnostic-data", "dmesg"][..], "\"dmesg\""),
    ] {
        let out = hull_ctl(addr, args).await;
        ensure!(
            out.status.code() == Some(1) && text(&out.stderr).contains(said),
            "hull-ctl {args:?}: {:?}\n{}",
            out.status.code(),
            text(&out.stderr)
        );
    }
    let applied = expect(
        addr,
        &["--json", "mem-agent-memcg", "--period-secs", "600"],
        0,
    )
    .await?;
    ensure!(applied.contains("\"applied\": true"), "{applied}");

    expect(addr, &["destroy-sandbox"], 0).await?;
    guest.wait_powered_off()
}
