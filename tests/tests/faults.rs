//! Faults a real deployment meets, in a real guest: the agent killed under a running
//! container, restarted by hull-init, and the sandbox rebuilt afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::guest::{SandboxGuest, sandbox_request};
use hull_e2e::vm::VmConfig;
use hull_protocols::agent::CreateContainerRequest;
use hull_protocols::client::{AgentClient, ClientError};
use hull_protocols::ttrpc::Code;

/// How long hull-init may take to restart the agent (its backoff starts at 100 ms).
const RESTART_DEADLINE: Duration = Duration::from_secs(60);

/// Checks that `result` failed with `code` and a message containing `text`.
fn refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, ClientError>,
    code: Code,
    text: &str,
) -> Result<()> {
    match result {
        Ok(answer) => bail!("{what}: accepted: {answer:?}"),
        Err(err) => {
            ensure!(
                err.rpc_code() == Some(code),
                "{what}: wanted {code:?}, got {err}"
            );
            ensure!(
                err.to_string().contains(text),
                "{what}: {err} lacks {text:?}"
            );
            Ok(())
        }
    }
}

/// A fresh client once the (restarted) agent answers Health.Check.
async fn reconnect(guest: &SandboxGuest) -> Result<AgentClient> {
    let address = guest.vm().agent_address();
    let started = Instant::now();
    let mut last_error = String::from("no attempt made");
    while started.elapsed() < RESTART_DEADLINE {
        match AgentClient::connect(&address, Duration::from_secs(1)).await {
            Ok(client) => {
                let client = client.with_timeout(Duration::from_secs(5));
                match client.check().await {
                    Ok(_) => return Ok(client.with_timeout(Duration::from_secs(60))),
                    Err(e) => last_error = e.to_string(),
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the agent did not come back within {RESTART_DEADLINE:?}: {last_error}")
}

/// The command lines of the guest's processes, seen by a container in its PID namespace.
async fn guest_processes(guest: &SandboxGuest, id: &str) -> Result<Vec<String>> {
    let script = "for p in /proc/[0-9]*; do \
           [ -r $p/cmdline ] && tr '\\0' ' ' < $p/cmdline && echo; done; true";
    let out = guest
        .run_container(id, &ContainerSpec::shell(script).in_guest_pid_namespace())
        .await?;
    ensure!(out.status == 0, "{id}: {out:?}");
    Ok(out
        .stdout
        .text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// `oom_score_adj` of init, the agent and the victim container's `sleep 7777`, seen by a
/// container in the guest's PID namespace.
async fn oom_scores(guest: &SandboxGuest, id: &str) -> Result<(String, String, String)> {
    let script = "echo init $(cat /proc/1/oom_score_adj); for p in /proc/[0-9]*; do \
           c=\"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\"; \
           [ \"$c\" = '/usr/bin/hull-agent ' ] && echo agent $(cat $p/oom_score_adj); \
           [ \"$c\" = 'sleep 7777 ' ] && echo victim $(cat $p/oom_score_adj); done; true";
    let out = guest
        .run_container(id, &ContainerSpec::shell(script).in_guest_pid_namespace())
        .await?;
    ensure!(out.status == 0, "{id}: {out:?}");
    let text = out.stdout.text();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Ok((value("init "), value("agent "), value("victim ")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_is_restarted_and_the_sandbox_can_be_rebuilt() -> Result<()> {
    let mut guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    let victim = guest
        .start_container("victim", &ContainerSpec::new(["sleep", "7777"]))
        .await?;
    let before = guest_processes(&guest, "ps-0").await?;
    ensure!(
        before.iter().any(|p| p == "sleep 7777"),
        "the victim does not run: {before:?}"
    );

    // init and the agent are shielded from the OOM killer; the container is not.
    let (init, agent, container) = oom_scores(&guest, "oom-0").await?;
    ensure!(
        (init.as_str(), agent.as_str(), container.as_str()) == ("-1000", "-997", "0"),
        "oom_score_adj: init {init:?}, agent {agent:?}, container {container:?}"
    );

    // A container in the guest's PID namespace SIGKILLs the agent (the process whose
    // command line is exactly the agent's path: helpers carry an argument), a second
    // after StartContainer has answered.
    let killer_script = "sleep 1; for p in /proc/[0-9]*; do \
           [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = '/usr/bin/hull-agent ' ] \
           && kill -9 ${p#/proc/} && echo killed ${p#/proc/}; done; sleep 5";
    let _killer = guest
        .start_container(
            "killer",
            &ContainerSpec::shell(killer_script).in_guest_pid_namespace(),
        )
        .await?;
    // The old connection dies with the agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    while guest.client.check().await.is_ok() {
        ensure!(Instant::now() < deadline, "the agent was not killed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    guest.client = reconnect(&guest).await?;
    let console = guest.vm().console();
    ensure!(
        console.contains("a previous agent died"),
        "the new agent did not report the dead one's leftovers; console:\n{console}"
    );
    for line in console
        .lines()
        .filter(|l| l.contains("a previous agent died"))
    {
        eprintln!("{line}");
    }

    // No sandbox until CreateSandbox: CreateContainer says so.
    guest.busybox_rootfs("early")?;
    let early = CreateContainerRequest {
        container_id: "early".into(),
        exec_id: "early".into(),
        OCI: Some(ContainerSpec::new(["true"]).to_proto("early")?).into(),
        ..Default::default()
    };
    refused(
        "CreateContainer before CreateSandbox after a restart",
        guest.client.create_container(&early).await,
        Code::FAILED_PRECONDITION,
        "CreateSandbox",
    )?;
    // The dead agent's container is unknown to the new one.
    refused(
        "StartContainer of the dead agent's container",
        guest.client.start_container("victim").await,
        Code::NOT_FOUND,
        "victim",
    )?;
    drop(victim);

    guest
        .client
        .create_sandbox(&sandbox_request("hull-sandbox", "hull"))
        .await
        .context("CreateSandbox after the agent's restart")?;
    let after = guest
        .run_container("after", &ContainerSpec::shell("echo alive"))
        .await?;
    ensure!(
        after.status == 0 && after.stdout.text().trim() == "alive",
        "a container after the restart: {after:?}"
    );
    let processes = guest_processes(&guest, "ps-1").await?;
    ensure!(
        !processes.iter().any(|p| p.contains("7777")),
        "the dead agent's container survived: {processes:?}"
    );
    guest.power_off().await?;
    Ok(())
}

/// The agent's resident memory (`VmRSS`, KiB), seen by a container in the guest's PID
/// namespace.
async fn agent_rss_kib(guest: &SandboxGuest, id: &str) -> Result<u64> {
    let script = "for p in /proc/[0-9]*; do \
           [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = '/usr/bin/hull-agent ' ] \
           && grep VmRSS $p/status; done; true";
    let out = guest
        .run_container(id, &ContainerSpec::shell(script).in_guest_pid_namespace())
        .await?;
    ensure!(out.status == 0, "{id}: {out:?}");
    let text = out.stdout.text();
    text.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("{id}: no VmRSS in {text:?}"))
}

/// Many connections each sending a maximal frame's header and most of its body, then
/// stalling: what ttRPC buffers for them stays within the agent's frame budget (16 MiB);
/// the agent keeps serving and a running container is intact.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_partial_frames_do_not_grow_the_agent() -> Result<()> {
    const CONNECTIONS: usize = 20;
    const BODY_SENT: usize = 3 << 20;
    let guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    let steady = guest
        .start_container("steady", &ContainerSpec::new(["sleep", "7777"]))
        .await?;
    let before = agent_rss_kib(&guest, "rss-0").await?;
    let port = match guest.vm().agent_address() {
        hull_protocols::address::AgentAddress::HybridVsock { port, .. } => port,
        other => bail!("unexpected agent address {other}"),
    };
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut conn = guest.vm().connect_guest_port(port).await?;
        conn.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut frame = (4u32 << 20).to_be_bytes().to_vec();
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&[1, 0]);
        frame.resize(frame.len() + BODY_SENT, 0x5a);
        // A connection the agent closed (shed) fails to write: that is the point.
        let _ = std::io::Write::write_all(&mut conn, &frame);
        held.push(conn);
    }
    let after = agent_rss_kib(&guest, "rss-1").await?;
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "agent RSS {before} KiB before, {after} KiB with {CONNECTIONS} stalled partial frames \
         of {} MiB sent each",
        BODY_SENT >> 20
    );
    // Unbounded, the agent would hold CONNECTIONS × 4 MiB (80 MiB: ttRPC zero-fills the
    // whole declared body); the budget lets 4 frames be in progress (16 MiB), plus what
    // the allocator keeps of freed buffers (measured: +23 MiB with 12 connections, +30
    // MiB with 20).
    ensure!(
        grown_mib < 40,
        "the agent grew by {grown_mib} MiB with {CONNECTIONS} stalled partial frames"
    );
    guest
        .client
        .check()
        .await
        .context("Health.Check after the attack")?;
    steady
        .stats()
        .await
        .context("StatsContainer of the running container after the attack")?;
    drop(held);
    steady.signal("", 9).await?;
    ensure!(
        steady.wait("").await? == 137,
        "the container did not end by SIGKILL"
    );
    steady.remove().await?;
    guest.power_off().await?;
    Ok(())
}
