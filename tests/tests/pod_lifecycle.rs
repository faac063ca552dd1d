//! A pod's whole life as each of Kata's runtimes drives the agent, each in a guest of its
//! own, with the request shapes each really sends ([`hull_e2e::kata_forms`]):
//! GetGuestDetails; UpdateInterface and UpdateRoutes for the pod's NIC; CreateSandbox (the share, the sandbox's shm, hostname, DNS); CopyFile
//! of the pod's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (as both copy them
//! when the VMM shares no file system); a pause container and an app container, the
//! latter given a virtio-blk disk hot-plugged through QMP into a PCIe root port, by its
//! PCI path; a vCPU and a pc-dimm hot-plugged through QMP, onlined with OnlineCPUMem as
//! each runtime asks, seen in the container's `/proc/cpuinfo` and `MemTotal`; the two
//! containers share the pod's IPC and UTS namespaces; runtime-rs's
//! `startContainer` hook runs inside the app container (the Go runtime strips hooks);
//! ExecProcess with WriteStdin and ReadStdout; StatsContainer and UpdateContainer;
//! SignalProcess, WaitProcess, RemoveContainer; DestroySandbox, and the VM powers off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::{Container, line_with, read_until};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::kata_forms::{self, KataRuntime, SharedFile};
use hull_e2e::nic::{self, NicConfig};
use hull_e2e::vm::{Hotplug, VmConfig};
use hull_protocols::client::AgentClient;
use hull_protocols::oci_spec::runtime::LinuxResources;
use serde_json::json;

const HOSTNAME: &str = "podlife";
const MAC: &str = "52:54:00:12:34:57";
const SIGKILL: i32 = 9;
const MIB: i64 = 1 << 20;
/// The pc-dimm hot-plugged: one memory block of this guest.
const DIMM_MIB: u64 = 128;
/// How long the guest may take to handle an ACPI hot-plug under TCG.
const GUEST_HANDLING: Duration = Duration::from_secs(60);
/// What the host writes at the start of the hot-plugged disk (32 bytes).
const DISK_MARKER: &str = "hull-pod-life-hotplugged-disk...";

/// Runs `script` as exec `exec_id` in container `ctr` (the runtime's shape); its stdout.
async fn exec_sh(
    client: &AgentClient,
    runtime: KataRuntime,
    ctr: &Container,
    exec_id: &str,
    script: &str,
) -> Result<String> {
    let req = runtime.exec_process(&ctr.id, exec_id, &ContainerSpec::shell(script))?;
    client
        .exec_process(&req)
        .await
        .with_context(|| format!("ExecProcess {script}"))?;
    let readers = ctr.readers(exec_id, false);
    let status = ctr.wait(exec_id).await?;
    let (stdout, stderr) = readers.finish().await?;
    ensure!(status == 0, "{script}: exit {status}: {}", stderr.text());
    Ok(stdout.text())
}

/// The guest's CPUs and MemTotal (KiB), as a container's `/proc` shows them.
async fn cpus_and_memory(
    client: &AgentClient,
    runtime: KataRuntime,
    ctr: &Container,
    exec_id: &str,
) -> Result<(u32, u64)> {
    let out = exec_sh(
        client,
        runtime,
        ctr,
        exec_id,
        "grep -c ^processor /proc/cpuinfo; grep ^MemTotal: /proc/meminfo",
    )
    .await?;
    let mut lines = out.lines();
    let cpus = lines.next().and_then(|n| n.trim().parse().ok());
    let kib = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok());
    match (cpus, kib) {
        (Some(cpus), Some(kib)) => Ok((cpus, kib)),
        _ => bail!("cpuinfo and meminfo: {out:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_as_the_go_runtime_drives_it() -> Result<()> {
    pod_life(KataRuntime::Go).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_as_runtime_rs_drives_it() -> Result<()> {
    pod_life(KataRuntime::Rust).await
}

async fn pod_life(runtime: KataRuntime) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config.hotplug = Some(Hotplug {
        max_cpus: 2,
        memory_slots: 2,
        max_memory_mib: 1024,
        root_ports: 1,
    });
    config.extra_cmdline.push("agent.hotplug_timeout=20".into());
    let nic = NicConfig::new(MAC);
    let nic_pci_path = nic.pci_path();
    config.nic = Some(nic);
    let mut guest = SandboxGuest::boot_without_sandbox(config).await?;
    let client = guest.client.clone();

    let details = client.guest_details().await.context("GetGuestDetails")?;
    ensure!(
        !details.agent_details.version.is_empty(),
        "GetGuestDetails: {details:?}"
    );
    // The pod's network, before CreateSandbox, as both runtimes set it up.
    let gateway = nic::GATEWAY.to_string();
    let wanted = runtime.update_interface(
        "eth0",
        MAC,
        &nic_pci_path,
        &nic::GUEST_ADDRESS.to_string(),
        nic::GUEST_PREFIX_LEN,
    );
    let eth0 = client
        .update_interface(wanted.clone())
        .await
        .context("UpdateInterface")?;
    ensure!(
        eth0.name == "eth0" && eth0.IPAddresses == wanted.IPAddresses,
        "UpdateInterface answered {eth0:?}"
    );
    let routes = client
        .update_routes(vec![runtime.default_route(&gateway, "eth0")])
        .await
        .context("UpdateRoutes")?;
    ensure!(
        routes
            .iter()
            .any(|r| r.gateway == gateway && r.device == "eth0"),
        "UpdateRoutes answered {routes:?}"
    );
    client
        .create_sandbox(&runtime.create_sandbox(
            "pod-life",
            HOSTNAME,
            &["nameserver 10.0.2.3", "search pod.local"],
        ))
        .await
        .context("CreateSandbox")?;

    let pause = format!("{}-pause", runtime.name());
    let app = format!("{}-app", runtime.name());
    // The pod files, copied as the runtime copies them.
    for id in [&pause, &app] {
        guest.busybox_rootfs(id)?;
        for (name, text) in [
            ("hostname", format!("{HOSTNAME}\n")),
            (
                "hosts",
                format!("127.0.0.1 localhost\n10.0.0.9 {HOSTNAME}\n"),
            ),
            ("resolv.conf", "nameserver 10.0.2.3\n".to_string()),
        ] {
            let file = SharedFile::pod_file(id, name);
            for req in runtime.copy_file(&file.guest_path, text.as_bytes(), 0o644) {
                client
                    .copy_file(&req)
                    .await
                    .with_context(|| format!("CopyFile {}", file.guest_path))?;
            }
        }
    }

    // The pause container.
    let create = runtime.create_container(
        &pause,
        &ContainerSpec::new(["sleep", "100000"]),
        &SharedFile::pod_files(&pause),
    )?;
    client
        .create_container(&create)
        .await
        .context("CreateContainer of the pause container")?;
    let pause_ctr = Container::attach(&client, &pause);
    pause_ctr.start().await.context("StartContainer pause")?;

    // A disk hot-plugged into root port 0, as the runtimes do it before CreateContainer.
    let disk = dir.path().join("hotplug.img");
    let mut bytes = DISK_MARKER.as_bytes().to_vec();
    bytes.resize(1 << 20, 0);
    std::fs::write(&disk, &bytes)?;
    let qmp = guest.vm_mut().qmp()?;
    qmp.execute(
        "blockdev-add",
        Some(json!({
            "driver": "raw",
            "node-name": "hp0",
            "file": {"driver": "file", "filename": disk.display().to_string()},
        })),
    )
    .context("QMP blockdev-add")?;
    qmp.execute(
        "device_add",
        Some(json!({"driver": "virtio-blk-pci", "drive": "hp0", "id": "hpdisk0", "bus": "rp0"})),
    )
    .context("QMP device_add into rp0")?;
    let pci_path = Hotplug::root_port_device_pci_path(0);

    // The app container: its pod files, the disk as /dev/xda (host numbers 8:0), and
    // (runtime-rs only) a startContainer hook.
    let script = "echo hostname=$(hostname); echo ipc=$(readlink /proc/self/ns/ipc); \
         echo etc=$(cat /etc/hostname); echo hook=$(cat /hook-ran 2>/dev/null); \
         echo disk=$(head -c 32 /dev/xda); echo routes=$(grep -c eth0 /proc/net/route); \
         echo ready; exec sleep 600";
    let spec = ContainerSpec {
        memory_limit: Some(64 * MIB),
        ..ContainerSpec::shell(script)
    };
    let hooks = json!({
        "startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "cat > /hook-ran"],
            "env": ["PATH=/bin"],
            "timeout": 10,
        }],
        "poststop": [{"path": "/bin/true"}],
    });
    let create =
        runtime.create_container_with_hooks(&app, &spec, &SharedFile::pod_files(&app), hooks)?;
    let create = kata_forms::with_blk_device(create, &pci_path, "/dev/xda", (8, 0));
    client
        .create_container(&create)
        .await
        .context("CreateContainer of the app with the hot-plugged disk")?;
    let app_ctr = Container::attach(&client, &app);
    app_ctr.start().await.context("StartContainer app")?;
    let out = read_until(&client, &app, "", "ready").await?;
    eprintln!("{runtime:?}: the app said {out:?}");
    ensure!(
        line_with(&out, "hostname=") == Some(HOSTNAME),
        "the pod's hostname: {out}"
    );
    ensure!(
        line_with(&out, "etc=") == Some(HOSTNAME),
        "the copied /etc/hostname: {out}"
    );
    ensure!(
        line_with(&out, "disk=") == Some(DISK_MARKER),
        "the hot-plugged disk: {out}"
    );
    ensure!(
        line_with(&out, "routes=").is_some_and(|n| n != "0"),
        "the app shares the pod's network, its eth0 routes: {out}"
    );
    let hook = line_with(&out, "hook=").unwrap_or_default();
    match runtime {
        KataRuntime::Go => ensure!(hook.is_empty(), "the Go runtime sends no hooks: {out}"),
        KataRuntime::Rust => ensure!(
            hook.contains(&format!("\"id\":\"{app}\"")) && hook.contains("\"status\":\"created\""),
            "runtime-rs's startContainer hook read the state: {out}"
        ),
    }

    // The pause container's IPC namespace is the app's: an exec there, with stdin.
    let cat = runtime.exec_process(
        &pause,
        "cat",
        &ContainerSpec::shell("readlink /proc/self/ns/ipc; hostname; cat"),
    )?;
    client.exec_process(&cat).await.context("ExecProcess")?;
    let written = client
        .write_stdin(&pause, "cat", b"ping from the host\n")
        .await
        .context("WriteStdin")?;
    ensure!(written == 19, "WriteStdin took {written} bytes");
    client
        .close_stdin(&pause, "cat")
        .await
        .context("CloseStdin")?;
    let readers = pause_ctr.readers("cat", false);
    let status = pause_ctr.wait("cat").await?;
    let (stdout, _) = readers.finish().await?;
    let text = stdout.text();
    ensure!(status == 0, "exec status {status}: {text}");
    let mut lines = text.lines();
    ensure!(
        lines.next() == line_with(&out, "ipc="),
        "one IPC namespace for the pod: pause {text:?}, app {out:?}"
    );
    ensure!(lines.next() == Some(HOSTNAME), "pause's hostname: {text}");
    ensure!(
        lines.next() == Some("ping from the host"),
        "ReadStdout gives back what WriteStdin wrote: {text}"
    );

    // StatsContainer, UpdateContainer.
    let stats = app_ctr.stats().await.context("StatsContainer")?;
    ensure!(
        stats.cgroup_stats.pids_stats.current >= 1,
        "pids in the app: {stats:?}"
    );
    ensure!(
        app_ctr.memory_limit().await? == 64 << 20,
        "created with 64 MiB"
    );
    let resources: LinuxResources = serde_json::from_value(json!({"memory": {"limit": 48 * MIB}}))?;
    client
        .update_container_request(&runtime.update_container(&app, Some(&resources))?)
        .await
        .context("UpdateContainer")?;
    ensure!(
        app_ctr.memory_limit().await? == 48 << 20,
        "updated to 48 MiB"
    );

    // The pod grows: a vCPU and a pc-dimm through QMP, onlined as the runtime asks.
    let (cpus, mem_before) = cpus_and_memory(&client, runtime, &app_ctr, "before").await?;
    ensure!(cpus == 1, "{cpus} CPUs before the hot-plug");
    let cpu = "pod-cpu1";
    guest.vm_mut().qmp()?.plug_vcpu(cpu)?;
    guest.vm_mut().qmp()?.plug_dimm("pod-dimm1", DIMM_MIB)?;
    guest
        .vm_mut()
        .qmp()?
        .wait_acpi_ost("pod-dimm1", GUEST_HANDLING)?;
    for req in runtime.online_cpu_mem(2) {
        client
            .online_cpu_mem(&req)
            .await
            .with_context(|| format!("OnlineCPUMem {req:?}"))?;
    }
    guest.vm_mut().qmp()?.wait_acpi_ost(cpu, GUEST_HANDLING)?;
    let (cpus, mem_after) = cpus_and_memory(&client, runtime, &app_ctr, "after").await?;
    eprintln!("{runtime:?}: {cpus} CPUs, MemTotal {mem_before} → {mem_after} KiB");
    ensure!(cpus == 2, "{cpus} CPUs in /proc/cpuinfo after the hot-plug");
    ensure!(
        mem_after >= mem_before + (DIMM_MIB << 10) * 9 / 10,
        "MemTotal {mem_before} → {mem_after} KiB after a {DIMM_MIB} MiB dimm"
    );

    // Teardown as the runtimes do it: SIGKILL, WaitProcess, RemoveContainer, then the
    // sandbox.
    for ctr in [&app_ctr, &pause_ctr] {
        ctr.signal("", SIGKILL).await.context("SignalProcess")?;
        let status = ctr.wait("").await.context("WaitProcess")?;
        ensure!(status == 128 + SIGKILL, "{}: status {status}", ctr.id);
        ctr.remove().await.context("RemoveContainer")?;
    }
    let took = guest.power_off().await.context("DestroySandbox")?;
    eprintln!("{runtime:?}: DestroySandbox to power-off {took:?}");
    Ok(())
}
