//! Faults a real deployment meets, in a real guest: the agent killed under a running
//! container, restarted by hull-init, and the sandbox rebuilt afterwards; stalled frames;
//! the guest out of memory; virtiofsd dying under a container; DestroySandbox under heavy
//! writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::guest::{SandboxGuest, sandbox_request};
use hull_e2e::inspect::inspect;
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
    let before = inspect(&guest, "rss-0").await?.agent.rss_kib;
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
    let after = inspect(&guest, "rss-1").await?.agent.rss_kib;
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "agent Rss (smaps_rollup) {before} KiB before, {after} KiB with {CONNECTIONS} stalled partial frames \
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

/// `Health.Check` answers SERVING.
async fn serving(client: &AgentClient) -> Result<()> {
    use hull_protocols::health::health_check_response::ServingStatus;
    let health = client.check().await.context("Health.Check")?;
    ensure!(
        health.status.enum_value() == Ok(ServingStatus::SERVING),
        "the agent answers {:?}",
        health.status
    );
    Ok(())
}

/// The guest's memory runs out (a container without a memory limit allocates more than
/// the guest has): the kernel's OOM killer ends container processes, never init or the
/// agent, and GetOOMEvent names the container (the agent watches `oom_kill` in each
/// container's `memory.events`, which counts global OOM kills of the cgroup's processes
/// too). Then, on the same guest: DestroySandbox while containers write as fast as they
/// can powers the VM off within 10 s.
#[tokio::test(flavor = "multi_thread")]
async fn guest_memory_pressure_spares_init_and_the_agent() -> Result<()> {
    const DESTROY_DEADLINE: Duration = Duration::from_secs(10);
    let guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    let before = inspect(&guest, "inspect-0").await?;
    let oom_events = tokio::spawn({
        let client = guest.client.clone().with_timeout(Duration::ZERO);
        async move { client.get_oom_event().await }
    });
    // Six copies holding 48 MiB each need more than the 256 MiB guest has.
    let pressure = ContainerSpec::shell(
        "for i in 1 2 3 4 5 6; do dd if=/dev/zero of=/dev/null bs=48M count=20 2>/dev/null & \
         done; wait; echo done",
    );
    let run = guest.run_container("pressure", &pressure).await?;
    let event = tokio::time::timeout(Duration::from_secs(30), oom_events)
        .await
        .context("no OOM event within 30 s of the pressure")???;
    ensure!(event == "pressure", "the OOM event names {event:?}");
    let console = guest.vm().console();
    let kills: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("Out of memory: Killed process") || l.contains("oom-kill:"))
        .collect();
    for line in &kills {
        eprintln!("{line}");
    }
    ensure!(
        console.contains("Out of memory: Killed process"),
        "the kernel's (global) OOM killer did not run (status {}, stderr {:?}); console:\n{console}",
        run.status,
        run.stderr.text()
    );
    ensure!(
        !console.contains("Memory cgroup out of memory"),
        "a cgroup limit, not the guest's memory, ran out"
    );
    serving(&guest.client).await?;
    let after = inspect(&guest, "inspect-1").await?;
    ensure!(
        after.agent.pid == before.agent.pid,
        "the agent's pid changed: {} → {}",
        before.agent.pid,
        after.agent.pid
    );
    // PID 1 cannot be replaced: had the OOM killer ended init, the kernel would have
    // panicked and the VM would be gone.
    ensure!(
        !guest.vm().console().contains("Kernel panic"),
        "the guest kernel panicked"
    );
    eprintln!(
        "memory pressure: {} OOM kills, agent pid {} and init survived, MemAvailable {} KiB \
         before, {} KiB after",
        kills
            .iter()
            .filter(|l| l.contains("Out of memory: Killed process"))
            .count(),
        after.agent.pid,
        before.mem_available_kib,
        after.mem_available_kib
    );

    // Containers writing as fast as they can: to stdout (read by the host), to the share
    // and to tmpfs.
    let mut writers = Vec::new();
    for (id, script) in [
        ("w-stdout", "while :; do head -c 16777216 /dev/zero; done"),
        (
            "w-share",
            "while :; do dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null; done",
        ),
        (
            "w-tmpfs",
            "while :; do dd if=/dev/zero of=/dev/shm/big bs=1M count=16 2>/dev/null; done",
        ),
    ] {
        let container = guest
            .start_container(id, &ContainerSpec::shell(script))
            .await?;
        writers.push(container.readers("", false));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = guest.power_off().await?;
    eprintln!("DestroySandbox with 3 containers writing heavily: off after {took:.1?}");
    ensure!(
        took <= DESTROY_DEADLINE,
        "the VM powered off {took:?} after DestroySandbox (allowed {DESTROY_DEADLINE:?})"
    );
    drop(writers);
    Ok(())
}

/// virtiofsd dies under a running container: calls that touch the share fail within a
/// bounded time with an error that says what went wrong, the agent keeps serving, and
/// DestroySandbox still powers the VM off.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_virtiofsd_fails_calls_clearly_and_the_guest_still_powers_off() -> Result<()> {
    const BOUND: Duration = Duration::from_secs(30);
    let mut guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    let runner = guest
        .start_container("runner", &ContainerSpec::new(["sleep", "600"]))
        .await?;
    guest.busybox_rootfs("late")?;
    guest.vm_mut().kill_virtiofsd(0)?;
    eprintln!("virtiofsd killed");

    // A container whose rootfs is in the share: refused within the bound.
    let late = CreateContainerRequest {
        container_id: "late".into(),
        exec_id: "late".into(),
        OCI: Some(ContainerSpec::new(["true"]).to_proto("late")?).into(),
        ..Default::default()
    };
    let bounded = guest
        .client
        .clone()
        .with_timeout(BOUND + Duration::from_secs(5));
    let asked = Instant::now();
    let answer = bounded.create_container(&late).await;
    let took = asked.elapsed();
    eprintln!("CreateContainer with the share's virtiofsd dead: {answer:?} after {took:.1?}");
    match &answer {
        Ok(()) => bail!("CreateContainer succeeded with the share gone"),
        Err(e) => ensure!(
            e.rpc_code() == Some(Code::DEADLINE_EXCEEDED) && e.to_string().contains("late/rootfs"),
            "CreateContainer: {e}"
        ),
    }
    ensure!(took <= BOUND, "the refusal took {took:?}");
    // An exec into the running container, whose root is in the share: bounded too.
    let exec = hull_protocols::agent::ExecProcessRequest {
        container_id: "runner".into(),
        exec_id: "probe".into(),
        process: Some(ContainerSpec::new(["true"]).process_proto()?).into(),
        ..Default::default()
    };
    let asked = Instant::now();
    let answer = bounded.exec_process(&exec).await;
    let took = asked.elapsed();
    eprintln!("ExecProcess with the share's virtiofsd dead: {answer:?} after {took:.1?}");
    match &answer {
        Ok(()) => bail!("ExecProcess succeeded with the container's root gone"),
        Err(e) => ensure!(
            e.rpc_code() == Some(Code::DEADLINE_EXCEEDED) && e.to_string().contains("rootfs"),
            "ExecProcess: {e}"
        ),
    }
    ensure!(took <= BOUND, "ExecProcess took {took:?}");
    serving(&guest.client).await?;
    // The running container still answers calls that do not touch the share.
    runner
        .stats()
        .await
        .context("StatsContainer of the running container")?;
    let took = guest.power_off().await?;
    eprintln!("DestroySandbox with the share's virtiofsd dead: off after {took:.1?}");
    Ok(())
}

/// vhost-device-vsock answers no CONNECT at all (its worker wedged; here it is stopped
/// with SIGSTOP once init has started the agent): the harness notices within its bound,
/// boots the guest again with a fresh backend, says so in its diagnostics, and the agent
/// answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_wedged_vsock_backend_is_noticed_and_the_guest_booted_again() -> Result<()> {
    use hull_e2e::vm::Vm;
    let config = VmConfig::new(GuestArtifacts::locate()?);
    if config.vmm != hull_e2e::vm::Vmm::Qemu {
        eprintln!("only QEMU runs vhost-device-vsock; nothing to wedge");
        return Ok(());
    }
    let mut vm = Vm::boot(&config)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !vm.console().contains("init: agent started") {
        ensure!(
            Instant::now() < deadline,
            "init did not start the agent:\n{}",
            vm.console()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vm.stop_vsock_backend()?;
    let asked = Instant::now();
    let (client, _) = vm.wait_for_agent(Duration::from_secs(120)).await?;
    let took = asked.elapsed();
    ensure!(
        vm.restarts() == 1,
        "the guest was booted {} more times",
        vm.restarts()
    );
    let diagnostics = vm.diagnostics();
    ensure!(
        diagnostics.contains("answered no CONNECT") && diagnostics.contains("console-1.log"),
        "the diagnostics do not tell of the restart:\n{diagnostics}"
    );
    serving(&client).await?;
    eprintln!(
        "a wedged vsock backend: noticed and the guest booted again, agent ready {took:.1?} after the wedge"
    );
    vm.power_off_through_agent(&client, Duration::from_secs(30))
        .await?;
    vm.finish();
    Ok(())
}
