//! Hot-plug into a running guest, as Kata's runtimes do it: QEMU's QMP adds a vCPU, a
//! pc-dimm, a virtio-blk disk and a virtio-net NIC (the PCI devices into PCIe root ports),
//! then the agent brings them into use: OnlineCPUMem onlines the vCPU and the memory,
//! CreateContainer mounts the disk found by its Kata PCI path, UpdateInterface
//! configures the NIC found by its PCI path. MemHotplugByProbe adds memory the kernel
//! was not told about (a guest booted with `acpi_no_memhotplug`), and refuses what it
//! cannot add with the kernel's reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::{ContainerSpec, guest_rootfs};
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Hotplug, VmConfig};
use hull_protocols::agent::{CreateContainerRequest, OnlineCPUMemRequest, Storage};
use hull_protocols::client::AgentClient;
use hull_protocols::oci_json;
use hull_protocols::ttrpc::Code;
use hull_protocols::types::{IPAddress, IPFamily, Interface};
use hull_testkit::check_refused;
use serde_json::json;

/// How long the guest may take to handle a hot-plug (ACPI under TCG).
const GUEST_HANDLING: Duration = Duration::from_secs(60);
/// The guest's `agent.hotplug_timeout`: also how long OnlineCPUMem waits for CPUs (at
/// least 5 s).
const HOTPLUG_TIMEOUT_SECS: u64 = 8;
/// The memory hot-plugged, one memory block of an x86_64 guest this small.
const DIMM_MIB: u64 = 128;
/// The hot-plugged NIC's MAC.
const NIC_MAC: &str = "52:54:00:00:0e:01";

fn hotplug_config() -> Result<VmConfig> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config.hotplug = Some(Hotplug {
        max_cpus: 2,
        memory_slots: 2,
        max_memory_mib: 1024,
        root_ports: 2,
    });
    config
        .extra_cmdline
        .push(format!("agent.hotplug_timeout={HOTPLUG_TIMEOUT_SECS}"));
    Ok(config)
}

/// Runs `script` in a fresh container and returns its stdout, failing on a non-zero exit.
async fn sh(guest: &SandboxGuest, id: &str, script: &str) -> Result<String> {
    let run = guest
        .run_container(id, &ContainerSpec::shell(script))
        .await?;
    ensure!(
        run.status == 0,
        "{script}: exit {}: {}",
        run.status,
        run.stderr.text()
    );
    Ok(run.stdout.text())
}

async fn guest_cpus(guest: &SandboxGuest, id: &str) -> Result<u32> {
    let out = sh(guest, id, "grep -c ^processor /proc/cpuinfo").await?;
    out.trim()
        .parse()
        .with_context(|| format!("cpuinfo count {out:?}"))
}

async fn mem_total_kib(guest: &SandboxGuest, id: &str) -> Result<u64> {
    let out = sh(guest, id, "grep ^MemTotal: /proc/meminfo").await?;
    out.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("MemTotal line {out:?}"))
}

fn online(cpus: u32, cpu_only: bool) -> OnlineCPUMemRequest {
    OnlineCPUMemRequest {
        wait: true,
        nb_cpus: cpus,
        cpu_only,
        ..Default::default()
    }
}

/// Creates and starts container `id` running `sleep`, its cgroup's `cpuset.cpus` set to
/// `cpus` (OCI `linux.resources.cpu.cpus`).
async fn start_pinned(guest: &SandboxGuest, id: &str, cpus: &str) -> Result<Container> {
    guest.busybox_rootfs(id)?;
    let mut config = ContainerSpec::new(["sleep", "600"]).config_json(&guest_rootfs(id));
    config["linux"]["resources"] = json!({ "cpu": { "cpus": cpus } });
    let spec = oci_json::spec_from_config_json(config.to_string().as_bytes())?;
    let container = Container::create(&guest.client, id, oci_json::spec_to_proto(&spec)?)
        .await
        .with_context(|| format!("CreateContainer {id} with cpuset {cpus}"))?;
    container.start().await.context("StartContainer")?;
    Ok(container)
}

/// The CPUs the container's init and a new process in it may run on
/// (`Cpus_allowed_list`), through ExecProcess.
async fn allowed_cpus(container: &Container, exec_id: &str) -> Result<String> {
    let script = "grep Cpus_allowed_list /proc/1/status /proc/self/status";
    let process = ContainerSpec::shell(script).process_proto()?;
    container
        .exec(exec_id, process)
        .await
        .context("ExecProcess")?;
    let readers = container.readers(exec_id, false);
    let status = container.wait(exec_id).await.context("WaitProcess")?;
    let (stdout, stderr) = readers.finish().await?;
    ensure!(status == 0, "{script}: exit {status}: {}", stderr.text());
    Ok(stdout.text())
}

/// An ext4 image of 8 MiB holding `data/<marker>` (mkfs.ext4 -d).
fn ext4_image(dir: &Path, marker: &str) -> Result<std::path::PathBuf> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("data"))?;
    std::fs::write(tree.join("data").join(marker), marker)?;
    let image = dir.join("hotplug.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("8M")
        .stdout(std::process::Stdio::null())
        .status()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    ensure!(status.success(), "mkfs.ext4 failed: {status}");
    Ok(image)
}

/// Creates container `id` whose storages include `storage`, mounted in it at `/disk`,
/// runs `script` to the end and returns its stdout.
async fn run_with_storage(
    guest: &SandboxGuest,
    id: &str,
    storage: Storage,
    script: &str,
) -> Result<String> {
    guest.busybox_rootfs(id)?;
    let spec = ContainerSpec::shell(script).bind_read_only(&storage.mount_point, "/disk");
    let client: &AgentClient = &guest.client;
    client
        .create_container(&CreateContainerRequest {
            container_id: id.into(),
            exec_id: id.into(),
            OCI: Some(spec.to_proto(id)?).into(),
            storages: vec![storage],
            ..Default::default()
        })
        .await
        .with_context(|| format!("CreateContainer {id} with the hot-plugged disk"))?;
    let container = Container::attach(client, id);
    let readers = container.readers("", false);
    container.start().await.context("StartContainer")?;
    let status = container.wait("").await.context("WaitProcess")?;
    let (stdout, stderr) = readers.finish().await?;
    container.remove().await.context("RemoveContainer")?;
    ensure!(status == 0, "{script}: exit {status}: {}", stderr.text());
    Ok(stdout.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vcpu_memory_a_disk_and_a_nic_hot_plugged_through_qmp_are_brought_into_use() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let image = ext4_image(dir.path(), "hot-plugged")?;
    let mut guest = SandboxGuest::boot(hotplug_config()?).await?;
    let details = guest.client.guest_details().await?;
    ensure!(
        details.support_mem_hotplug_probe && details.mem_block_size_bytes == DIMM_MIB << 20,
        "the guest kernel's memory hot-plug: {details:?}"
    );

    // (a) A vCPU: plugged, registered by the guest through ACPI, onlined by the agent.
    // A container pinned to CPUs 0-1 before CPU 1 exists runs on CPU 0 until then.
    ensure!(guest_cpus(&guest, "cpus-before").await? == 1);
    let pinned = start_pinned(&guest, "pinned", "0-1").await?;
    let allowed = allowed_cpus(&pinned, "before").await?;
    ensure!(
        allowed.lines().count() == 2 && allowed.lines().all(|l| l.ends_with(":\t0")),
        "before the hot-plug: {allowed:?}"
    );
    let cpu = "hp-cpu1";
    guest.vm_mut().qmp()?.plug_vcpu(cpu)?;
    let started = Instant::now();
    guest
        .client
        .online_cpu_mem(&online(2, true))
        .await
        .context("OnlineCPUMem for 2 CPUs after plugging one")?;
    eprintln!("OnlineCPUMem (2 CPUs) took {:?}", started.elapsed());
    guest.vm_mut().qmp()?.wait_acpi_ost(cpu, GUEST_HANDLING)?;
    let cpus = guest_cpus(&guest, "cpus-after").await?;
    ensure!(
        cpus == 2,
        "/proc/cpuinfo lists {cpus} CPUs after the hot-plug"
    );
    // cgroup v2 follows by itself: the running init and a new process get CPU 1 with no
    // cpuset rewritten.
    let allowed = allowed_cpus(&pinned, "after").await?;
    ensure!(
        allowed.lines().count() == 2 && allowed.lines().all(|l| l.ends_with(":\t0-1")),
        "after the hot-plug: {allowed:?}"
    );
    pinned.signal("", 9).await.context("SignalProcess")?;
    pinned.wait("").await.context("WaitProcess")?;
    pinned.remove().await.context("RemoveContainer")?;
    // Asking for more CPUs than exist fails in bounded time, saying how many are online.
    check_refused(
        "OnlineCPUMem for 3 CPUs",
        guest.client.online_cpu_mem(&online(3, true)).await,
        Code::DEADLINE_EXCEEDED,
        "2 CPU(s) online, 3 asked for",
    )
    .map_err(anyhow::Error::msg)?;

    // (b) Memory: a pc-dimm, added by ACPI offline, onlined by the agent.
    let before = mem_total_kib(&guest, "mem-before").await?;
    let addr = guest.vm_mut().qmp()?.plug_dimm("hp-dimm1", DIMM_MIB)?;
    guest
        .vm_mut()
        .qmp()?
        .wait_acpi_ost("hp-dimm1", GUEST_HANDLING)?;
    let offline = mem_total_kib(&guest, "mem-offline").await?;
    ensure!(
        offline == before,
        "MemTotal changed before OnlineCPUMem ({before} → {offline} KiB): the kernel onlined \
         the memory itself"
    );
    guest
        .client
        .online_cpu_mem(&online(0, false))
        .await
        .context("OnlineCPUMem for memory")?;
    let after = mem_total_kib(&guest, "mem-after").await?;
    ensure!(
        after >= before + (DIMM_MIB << 10) * 9 / 10,
        "MemTotal {before} → {after} KiB after onlining a {DIMM_MIB} MiB dimm"
    );
    eprintln!("pc-dimm at {addr:#x}: MemTotal {before} → {after} KiB once onlined");

    // (c) The probe refuses, with the kernel's reason, memory that is there already, an
    // address beyond what the kernel can address, and one not at a block's start.
    let probe_refused = |what: &str, result, code, needle: &str| {
        check_refused(what, result, code, needle).map_err(anyhow::Error::msg)
    };
    probe_refused(
        "probe of the ACPI-added dimm",
        guest.client.mem_hotplug_by_probe(&[addr]).await,
        Code::ALREADY_EXISTS,
        "File exists",
    )?;
    probe_refused(
        "probe at 1 PiB",
        guest.client.mem_hotplug_by_probe(&[1 << 50]).await,
        Code::INVALID_ARGUMENT,
        "Argument list too long",
    )?;
    probe_refused(
        "unaligned probe",
        guest.client.mem_hotplug_by_probe(&[addr + 4096]).await,
        Code::INVALID_ARGUMENT,
        "not a multiple of the memory block size",
    )?;

    // (d) A virtio-blk disk into root port rp0, mounted by its Kata PCI path.
    let qmp = guest.vm_mut().qmp()?;
    qmp.execute(
        "blockdev-add",
        Some(json!({
            "node-name": "hp-disk",
            "driver": "raw",
            "read-only": true,
            "file": { "driver": "file", "filename": image, "read-only": true },
        })),
    )
    .context("blockdev-add")?;
    qmp.execute(
        "device_add",
        Some(
            json!({ "driver": "virtio-blk-pci", "id": "hp-blk", "drive": "hp-disk", "bus": "rp0" }),
        ),
    )
    .context("device_add of virtio-blk-pci into rp0")?;
    let disk_path = Hotplug::root_port_device_pci_path(0);
    let marker = run_with_storage(
        &guest,
        "hp-disk",
        Storage {
            driver: "blk".into(),
            source: disk_path.clone(),
            fstype: "ext4".into(),
            options: vec!["ro".into()],
            mount_point: "/run/kata-containers/sandbox/storage/hp-blk".into(),
            ..Default::default()
        },
        "cat /disk/data/hot-plugged",
    )
    .await
    .with_context(|| format!("the disk at PCI path {disk_path}"))?;
    ensure!(marker == "hot-plugged", "read {marker:?} from the disk");

    // (e) A virtio-net NIC into rp1, configured by its PCI path.
    let qmp = guest.vm_mut().qmp()?;
    qmp.execute(
        "netdev_add",
        Some(json!({ "type": "user", "id": "hp-net", "restrict": true })),
    )
    .context("netdev_add")?;
    qmp.execute(
        "device_add",
        Some(json!({
            "driver": "virtio-net-pci", "id": "hp-nic", "netdev": "hp-net", "mac": NIC_MAC,
            "bus": "rp1",
        })),
    )
    .context("device_add of virtio-net-pci into rp1")?;
    let nic_path = Hotplug::root_port_device_pci_path(1);
    let address = IPAddress {
        family: IPFamily::v4.into(),
        address: "10.0.3.15".into(),
        mask: "24".into(),
        ..Default::default()
    };
    let answered = guest
        .client
        .update_interface(Interface {
            name: "eth9".into(),
            devicePath: nic_path.clone(),
            mtu: 1400,
            IPAddresses: vec![address.clone()],
            ..Default::default()
        })
        .await
        .with_context(|| format!("UpdateInterface by PCI path {nic_path}"))?;
    ensure!(
        answered.hwAddr == NIC_MAC && answered.name == "eth9",
        "{answered:?}"
    );
    let listed = guest.client.list_interfaces().await?;
    let nic = listed
        .iter()
        .find(|i| i.hwAddr == NIC_MAC)
        .with_context(|| format!("the hot-plugged NIC is not listed: {listed:#?}"))?;
    ensure!(
        nic.name == "eth9" && nic.mtu == 1400 && nic.IPAddresses.contains(&address),
        "{nic:?}"
    );

    guest.power_off().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_the_kernel_was_not_told_about_is_added_by_probe() -> Result<()> {
    let mut config = hotplug_config()?;
    // The ACPI memory driver off: a pc-dimm reaches the guest only through the probe
    // file, as on a VMM without ACPI memory hot-plug.
    config.extra_cmdline.push("acpi_no_memhotplug".into());
    let mut guest = SandboxGuest::boot(config).await?;
    let before = mem_total_kib(&guest, "mem-before").await?;
    let addr = guest.vm_mut().qmp()?.plug_dimm("hp-dimm1", DIMM_MIB)?;
    // Nothing tells the guest; give an (unexpected) ACPI handling time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unannounced = mem_total_kib(&guest, "mem-unannounced").await?;
    ensure!(
        unannounced == before,
        "MemTotal grew without the probe ({before} → {unannounced} KiB)"
    );
    let started = Instant::now();
    let probed = guest.client.mem_hotplug_by_probe(&[addr]).await;
    if let Err(e) = probed {
        bail!("MemHotplugByProbe of the pc-dimm at {addr:#x}: {e}");
    }
    eprintln!("MemHotplugByProbe took {:?}", started.elapsed());
    let after = mem_total_kib(&guest, "mem-after").await?;
    ensure!(
        after >= before + (DIMM_MIB << 10) * 9 / 10,
        "MemTotal {before} → {after} KiB after probing a {DIMM_MIB} MiB dimm"
    );
    eprintln!("pc-dimm at {addr:#x}: MemTotal {before} → {after} KiB once probed");
    // Probing it again: the kernel has it.
    check_refused(
        "a second probe",
        guest.client.mem_hotplug_by_probe(&[addr]).await,
        Code::ALREADY_EXISTS,
        "File exists",
    )
    .map_err(anyhow::Error::msg)?;
    guest.power_off().await?;
    Ok(())
}
