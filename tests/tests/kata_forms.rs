//! Kata's two runtimes drive hull unchanged: in one guest, with the sandbox created as
//! both create it (the virtio-fs share and the sandbox's shm), a container from each
//! runtime's CreateContainer shape ([`hull_e2e::kata_forms`]: the Go runtime's OCI names
//! and `CAP_` capabilities, runtime-rs's `mnt` and bare capability names) runs with its
//! pod files and the sandbox's `/dev/shm`, takes an ExecProcess of its runtime's shape,
//! an UpdateContainer with resources and one without, and is stopped and removed as the
//! runtimes do it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::{Container, line_with, read_until};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::kata_forms::{self, KataRuntime, SharedFile};
use hull_e2e::vm::VmConfig;
use hull_protocols::oci_spec::runtime::LinuxResources;

/// Docker's default capabilities as a `CapEff` mask: what every process of these
/// containers must hold, the exec'd ones too (the Go runtime sends them none).
const DEFAULT_CAP_EFF: &str = "00000000a80425fb";
const SIGKILL: i32 = 9;
const MIB: i64 = 1 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn both_kata_runtimes_drive_hull_unchanged() -> Result<()> {
    let artifacts = GuestArtifacts::locate()?;
    let guest = SandboxGuest::boot_without_sandbox(VmConfig::new(artifacts)).await?;
    guest
        .client
        .create_sandbox(&kata_forms::sandbox_request("hull-sandbox", "pod"))
        .await
        .context("CreateSandbox with the share and the sandbox's shm")?;
    let mut before = Vec::new();
    for runtime in KataRuntime::BOTH {
        one_runtime(&guest, runtime, &before)
            .await
            .with_context(|| format!("{runtime:?} runtime's requests"))?;
        before.push(runtime);
    }
    guest.power_off().await?;
    Ok(())
}

/// One runtime's container, start to end; `before` ran theirs earlier in this sandbox.
async fn one_runtime(
    guest: &SandboxGuest,
    runtime: KataRuntime,
    before: &[KataRuntime],
) -> Result<()> {
    let client = &guest.client;
    let id = format!("{}-pod", runtime.name());
    guest.busybox_rootfs(&id)?;
    for (name, text) in [
        ("hostname", format!("{id}\n")),
        ("hosts", format!("127.0.0.1 localhost\n10.0.0.9 {id}\n")),
        ("resolv.conf", "nameserver 10.0.0.53\n".to_string()),
    ] {
        std::fs::write(guest.share().join(SharedFile::share_name(&id, name)), text)?;
    }
    let marker = format!("{}-was-here", runtime.name());
    let script = format!(
        "echo pid=$$; grep CapEff /proc/self/status; echo hostname=$(cat /etc/hostname); \
         grep -q '10.0.0.9 {id}' /etc/hosts && echo hosts=ok; echo home=$HOME; \
         touch /dev/shm/{marker}; echo shm=$(ls /dev/shm | tr '\\n' ' '); echo ready; \
         exec sleep 600"
    );
    let spec = ContainerSpec {
        memory_limit: Some(64 * MIB),
        ..ContainerSpec::shell(&script)
    };
    let create = runtime.create_container(&id, &spec, &SharedFile::pod_files(&id))?;
    client
        .create_container(&create)
        .await
        .context("CreateContainer")?;
    let container = Container::attach(client, &id);
    container.start().await.context("StartContainer")?;
    let out = read_until(client, &id, "", "ready").await?;
    ensure!(
        line_with(&out, "pid=") == Some("1"),
        "its own PID namespace: {out}"
    );
    ensure!(
        line_with(&out, "CapEff:") == Some(DEFAULT_CAP_EFF),
        "init's capabilities: {out}"
    );
    ensure!(
        line_with(&out, "hostname=") == Some(id.as_str()),
        "pod hostname file: {out}"
    );
    ensure!(out.contains("hosts=ok"), "pod hosts file: {out}");
    ensure!(line_with(&out, "home=") == Some("/root"), "HOME: {out}");
    let shm = line_with(&out, "shm=").unwrap_or_default();
    for runtime in before.iter().chain([&runtime]) {
        let seen = format!("{}-was-here", runtime.name());
        ensure!(
            shm.split_whitespace().any(|f| f == seen),
            "the sandbox's shm holds {seen}: {out}"
        );
    }

    // ExecProcess as the runtime shapes it; the Go runtime's with an empty cwd.
    let probe = ContainerSpec {
        cwd: match runtime {
            KataRuntime::Go => String::new(),
            KataRuntime::Rust => "/".into(),
        },
        ..ContainerSpec::shell(
            "grep CapEff /proc/self/status; echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); \
             echo home=$HOME; echo cwd=$(pwd); exit 7",
        )
    };
    let exec = runtime.exec_process(&id, "probe", &probe)?;
    client.exec_process(&exec).await.context("ExecProcess")?;
    let readers = container.readers("probe", false);
    let status = container.wait("probe").await?;
    let (stdout, stderr) = readers.finish().await?;
    let text = stdout.text();
    ensure!(
        status == 7,
        "exec status {status}: {text} {}",
        stderr.text()
    );
    ensure!(
        line_with(&text, "CapEff:") == Some(DEFAULT_CAP_EFF),
        "the exec'd process has the container's capabilities: {text}"
    );
    ensure!(
        line_with(&text, "pid1=") == Some("sleep 600"),
        "exec sees the container's PID 1: {text}"
    );
    ensure!(line_with(&text, "home=") == Some("/root"), "HOME: {text}");
    ensure!(line_with(&text, "cwd=") == Some("/"), "cwd: {text}");
    eprintln!("{runtime:?}: init said {out:?}; exec said {text:?}");

    // UpdateContainer with resources, then without any (the Go runtime: all empty).
    ensure!(
        container.memory_limit().await? == 64 << 20,
        "created with 64 MiB"
    );
    let resources: LinuxResources = serde_json::from_value(serde_json::json!({
        "memory": {"limit": 48 * MIB},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
    }))?;
    client
        .update_container_request(&runtime.update_container(&id, Some(&resources))?)
        .await
        .context("UpdateContainer with resources")?;
    ensure!(
        container.memory_limit().await? == 48 << 20,
        "updated to 48 MiB"
    );
    let nothing = runtime.update_container(&id, None)?;
    ensure!(
        nothing.resources.is_some() == (runtime == KataRuntime::Go),
        "the Go runtime sends empty resources, runtime-rs none"
    );
    client
        .update_container_request(&nothing)
        .await
        .context("UpdateContainer without resources")?;
    ensure!(
        container.memory_limit().await? == 48 << 20,
        "an update without resources changes nothing"
    );

    // Stopped and removed as the runtimes do: SIGKILL, WaitProcess, RemoveContainer.
    container.signal("", SIGKILL).await?;
    let status = container.wait("").await?;
    ensure!(status == 128 + SIGKILL, "killed: status {status}");
    container.remove().await.context("RemoveContainer")?;
    ensure!(
        container.stats().await.is_err(),
        "{id} is gone after RemoveContainer"
    );
    Ok(())
}
