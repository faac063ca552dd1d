//! A container's devices in a real guest (`CreateContainer`'s `devices`, Kata's per-container
//! devices): disks attached at boot, a virtio-blk one by its PCI path, a SCSI one by its
//! SCSI address, a virtio-pmem one by its `/dev/pmemN`, are given to a container under
//! host numbers that are not the guest's. In the container each node has the guest disk's
//! numbers and reads the disk's first bytes as the host wrote them. VFIO is refused by
//! name, a disk that never appears times out naming it, bad inputs get precise codes, and
//! the agent serves on. Then Kata's shared mounts: a mount made in one container is given
//! to another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Disk, VmConfig};
use hull_protocols::agent::{CreateContainerRequest, Device, SharedMount};
use hull_protocols::oci;
use hull_protocols::ttrpc::Code;
use hull_testkit::{check_all, refusal};

/// The guest's `agent.hotplug_timeout` here.
const HOTPLUG_TIMEOUT: Duration = Duration::from_secs(2);
/// The virtio-blk disk's slot: Kata PCI path "10".
const BLK_SLOT: u8 = 0x10;
/// The SCSI disk's target and LUN: Kata SCSI address "0:1".
const SCSI_TARGET: u8 = 0;
const SCSI_LUN: u16 = 1;

/// One disk given to the container.
struct TestDisk {
    /// Kata's driver name.
    driver: &'static str,
    /// `Device.id`.
    id: String,
    /// `Device.vm_path`.
    vm_path: &'static str,
    /// Its path in the container.
    container_path: &'static str,
    /// The host numbers the spec lists it under (not the guest's).
    host: (i64, i64),
    /// What the host wrote at the start of the disk (32 bytes).
    marker: &'static str,
    /// The guest's kernel name starts with this.
    guest_name: &'static str,
}

fn disks() -> Vec<TestDisk> {
    vec![
        TestDisk {
            driver: "blk",
            id: format!("{BLK_SLOT:02x}"),
            vm_path: "/dev/vdz",
            container_path: "/dev/xda",
            host: (8, 0),
            marker: "hull-devices-virtio-blk-by-pci..",
            guest_name: "vd",
        },
        TestDisk {
            driver: "scsi",
            id: format!("{SCSI_TARGET}:{SCSI_LUN}"),
            vm_path: "",
            container_path: "/dev/xdb",
            host: (259, 7),
            marker: "hull-devices-scsi-by-address....",
            guest_name: "sd",
        },
        TestDisk {
            driver: "nvdimm",
            id: String::new(),
            vm_path: "/dev/pmem0",
            container_path: "/dev/xdc",
            host: (8, 48),
            marker: "hull-devices-pmem-by-vm-path....",
            guest_name: "pmem",
        },
    ]
}

/// A raw image of `bytes` starting with `marker`.
fn image(path: &Path, marker: &str, bytes: u64) -> Result<()> {
    ensure!(marker.len() == 32, "markers are 32 bytes: {marker:?}");
    std::fs::write(path, marker)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(bytes)?;
    Ok(())
}

fn device(driver: &str, id: &str, vm_path: &str, container_path: &str) -> Device {
    Device {
        id: id.into(),
        type_: driver.into(),
        vm_path: vm_path.into(),
        container_path: container_path.into(),
        ..Default::default()
    }
}

/// `spec` with `linux.devices` entries (block, host numbers) and cgroup rules: deny
/// everything, allow each device by its host numbers.
fn with_devices(mut spec: oci::Spec, entries: &[(&str, (i64, i64))]) -> oci::Spec {
    let linux = spec.Linux.mut_or_insert_default();
    let resources = linux.Resources.mut_or_insert_default();
    resources.Devices.push(oci::LinuxDeviceCgroup {
        Allow: false,
        Access: "rwm".into(),
        Major: -1,
        Minor: -1,
        ..Default::default()
    });
    for (path, (major, minor)) in entries {
        linux.Devices.push(oci::LinuxDevice {
            Path: path.to_string(),
            Type: "b".into(),
            Major: *major,
            Minor: *minor,
            FileMode: 0o660,
            ..Default::default()
        });
        resources.Devices.push(oci::LinuxDeviceCgroup {
            Allow: true,
            Type: "b".into(),
            Major: *major,
            Minor: *minor,
            Access: "rwm".into(),
            ..Default::default()
        });
    }
    spec
}

fn request(id: &str, spec: oci::Spec, devices: Vec<Device>) -> CreateContainerRequest {
    CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: Some(spec).into(),
        devices,
        ..Default::default()
    }
}

/// Each device's line: `PATH MAJOR MINOR FIRST-32-BYTES`, then the guest's block devices
/// as `NAME MAJOR:MINOR` (sysfs is the guest's, so the container can see them).
const SCRIPT: &str = r#"
for d in /dev/xda /dev/xdb /dev/xdc; do
  echo "dev $d $(stat -c '%t %T' $d) $(dd if=$d bs=32 count=1 2>/dev/null)"
done
for b in /sys/class/block/*; do echo "sys ${b##*/} $(cat $b/dev)"; done
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_container_gets_its_disks_under_the_guests_numbers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let disks = disks();
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config.extra_cmdline.push(format!(
        "agent.hotplug_timeout={}",
        HOTPLUG_TIMEOUT.as_secs()
    ));
    for disk in &disks {
        let path = dir.path().join(format!("{}.img", disk.driver));
        // virtio-pmem needs a multiple of 2 MiB.
        image(&path, disk.marker, 2 << 20)?;
        config.disks.push(match disk.driver {
            "blk" => Disk::virtio_blk(&path, BLK_SLOT),
            "scsi" => Disk::scsi(&path, SCSI_TARGET, SCSI_LUN),
            _ => Disk::virtio_pmem(&path)?,
        });
    }
    let guest = SandboxGuest::boot(config).await?;
    let client = &guest.client;
    let id = "with-disks";
    guest.busybox_rootfs(id)?;
    let entries: Vec<(&str, (i64, i64))> =
        disks.iter().map(|d| (d.container_path, d.host)).collect();
    let spec = || -> Result<oci::Spec> {
        Ok(with_devices(
            ContainerSpec::shell(SCRIPT).to_proto(id)?,
            &entries,
        ))
    };
    let devices: Vec<Device> = disks
        .iter()
        .map(|d| device(d.driver, &d.id, d.vm_path, d.container_path))
        .collect();

    // Bad requests first, all for the same id: none may leave anything behind.
    let with = |extra: Device| {
        let mut list = devices.clone();
        list.push(extra);
        list
    };
    let vfio = device("vfio-pci", "12", "", "/dev/vfio/12");
    let mut shared = request(id, spec()?, devices.clone());
    shared.shared_mounts = vec![shared_mount("m", "a", "/a", "b")];
    let duplicate = device("scsi", "0:1", "", "/dev/xda");
    check_all(vec![
        refusal(
            "a VFIO device",
            client.create_container(&request(id, spec()?, with(vfio))),
            Code::FAILED_PRECONDITION,
            "type \"vfio-pci\" (VFIO PCI passthrough) is not supported by this guest",
        ),
        refusal(
            "an unknown device type",
            client.create_container(&request(
                id,
                spec()?,
                vec![device("gpu", "0", "", "/dev/xda")],
            )),
            Code::INVALID_ARGUMENT,
            "unknown device type \"gpu\"",
        ),
        refusal(
            "a bad PCI path",
            client.create_container(&request(
                id,
                spec()?,
                vec![device("blk", "zz", "", "/dev/xda")],
            )),
            Code::INVALID_ARGUMENT,
            "invalid PCI path \"zz\"",
        ),
        refusal(
            "a bad SCSI address",
            client.create_container(&request(
                id,
                spec()?,
                vec![device("scsi", "1", "", "/dev/xdb")],
            )),
            Code::INVALID_ARGUMENT,
            "invalid SCSI address \"1\"",
        ),
        refusal(
            "a device without a container path",
            client.create_container(&request(id, spec()?, vec![device("blk", "10", "", "")])),
            Code::INVALID_ARGUMENT,
            "devices[0]: container_path is empty",
        ),
        refusal(
            "one path twice",
            client.create_container(&request(id, spec()?, with(duplicate))),
            Code::INVALID_ARGUMENT,
            "two devices are given for /dev/xda",
        ),
        refusal(
            "a device missing from the spec",
            client.create_container(&request(
                id,
                spec()?,
                vec![device("blk", &format!("{BLK_SLOT:02x}"), "", "/dev/nope")],
            )),
            Code::INVALID_ARGUMENT,
            "device /dev/nope is not in the spec's linux.devices",
        ),
        refusal(
            "a shared mount to a relative path",
            client.create_container(&shared),
            Code::INVALID_ARGUMENT,
            "shared_mounts[0] (\"m\"): dst_path must be absolute",
        ),
    ])
    .await
    .map_err(anyhow::Error::msg)?;

    // Disks that are not there: each waits the hot-plug timeout, then names the disk.
    for (missing, what) in [
        (device("blk", "1e", "", "/dev/xda"), "PCI path 1e"),
        (device("scsi", "0:9", "", "/dev/xdb"), "SCSI disk 0:9"),
        (device("nvdimm", "", "/dev/pmem5", "/dev/xdc"), "pmem5"),
    ] {
        let started = Instant::now();
        let result = client
            .create_container(&request(id, spec()?, vec![missing.clone()]))
            .await;
        let took = started.elapsed();
        hull_testkit::check_refused(
            "a disk that never appears",
            result,
            Code::DEADLINE_EXCEEDED,
            what,
        )
        .map_err(anyhow::Error::msg)?;
        ensure!(
            took >= HOTPLUG_TIMEOUT && took < HOTPLUG_TIMEOUT + Duration::from_secs(20),
            "{what}: refused after {took:?}, expected about {HOTPLUG_TIMEOUT:?}"
        );
    }

    // The real thing, with the same id.
    let asked = Instant::now();
    client
        .create_container(&request(id, spec()?, devices.clone()))
        .await
        .context("CreateContainer with blk, scsi and nvdimm devices")?;
    eprintln!(
        "CreateContainer with three devices took {:?}",
        asked.elapsed()
    );
    let container = Container::attach(client, id);
    let readers = container.readers("", false);
    container.start().await.context("StartContainer")?;
    let status = container.wait("").await.context("WaitProcess")?;
    let (stdout, stderr) = readers.finish().await?;
    let stdout = String::from_utf8_lossy(&stdout.bytes).into_owned();
    ensure!(
        status == 0,
        "status {status}; stdout {stdout:?}; stderr {:?}",
        String::from_utf8_lossy(&stderr.bytes)
    );
    container.remove().await.context("RemoveContainer")?;

    // NAME → MAJOR:MINOR of the guest's block devices.
    let sysfs: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("sys "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for disk in &disks {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("dev {} ", disk.container_path)))
            .with_context(|| format!("no line for {}: {stdout}", disk.container_path))?;
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        ensure!(fields.len() == 5, "{line:?}");
        let major = u32::from_str_radix(fields[2], 16).context(line.to_string())?;
        let minor = u32::from_str_radix(fields[3], 16).context(line.to_string())?;
        let numbers = format!("{major}:{minor}");
        let (name, _) = sysfs
            .iter()
            .find(|(_, dev)| *dev == numbers)
            .with_context(|| format!("{line:?}: no guest block device is {numbers}: {stdout}"))?;
        ensure!(
            name.starts_with(disk.guest_name),
            "{}: the node is {numbers}, the guest's {name}, expected a {}* disk",
            disk.container_path,
            disk.guest_name
        );
        ensure!(
            (i64::from(major), i64::from(minor)) != disk.host,
            "{}: still the host's numbers {numbers}",
            disk.container_path
        );
        ensure!(
            fields[4] == disk.marker,
            "{}: read {:?}, the host wrote {:?}",
            disk.container_path,
            fields[4],
            disk.marker
        );
        eprintln!(
            "{} ({}): guest {name} {numbers}",
            disk.container_path, disk.driver
        );
    }

    shared_mounts_join_two_containers(&guest).await?;
    guest.power_off().await?;
    Ok(())
}

fn shared_mount(name: &str, src_ctr: &str, src_path: &str, dst_path: &str) -> SharedMount {
    SharedMount {
        name: name.into(),
        src_ctr: src_ctr.into(),
        src_path: src_path.into(),
        dst_ctr: "consumer".into(),
        dst_path: dst_path.into(),
        ..Default::default()
    }
}

/// `spec` named `name` for Kubernetes (CRI containerd's annotation, which Kata reads).
fn named(mut spec: oci::Spec, name: &str) -> oci::Spec {
    spec.Annotations
        .insert("io.kubernetes.cri.container-name".into(), name.into());
    spec
}

/// Kata's shared mounts: a tmpfs the producer container has at /shared-src is given to
/// the consumer at /shared-dst (created there); both see one file system. A source
/// container that does not exist is skipped, as Kata does.
async fn shared_mounts_join_two_containers(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    guest.busybox_rootfs("producer")?;
    guest.busybox_rootfs("consumer")?;
    let mut producer = ContainerSpec::shell(
        "echo written-by-the-producer > /shared-src/note && echo ready && sleep 600",
    );
    producer.extra_mounts.push(serde_json::json!({
        "destination": "/shared-src", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=755"],
    }));
    let producer_spec = named(producer.to_proto("producer")?, "producer");
    let producer = Container::attach(client, "producer");
    client
        .create_container(&request("producer", producer_spec, Vec::new()))
        .await
        .context("CreateContainer producer")?;
    producer.start().await.context("StartContainer producer")?;
    let blocking = client.clone().with_timeout(Duration::ZERO);
    let mut seen = String::new();
    while !seen.contains("ready") {
        let chunk = tokio::time::timeout(
            Duration::from_secs(60),
            blocking.read_stdout("producer", "", 4096),
        )
        .await
        .context("waiting for the producer")??;
        ensure!(!chunk.is_empty(), "the producer ended: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let consumer_spec = named(
        ContainerSpec::shell(
            "cat /shared-dst/note && echo back > /shared-dst/reply && grep -c ' /shared-dst ' /proc/self/mounts",
        )
        .to_proto("consumer")?,
        "consumer",
    );
    let mut req = request("consumer", consumer_spec, Vec::new());
    req.shared_mounts = vec![
        shared_mount("note", "producer", "/shared-src", "/shared-dst"),
        shared_mount("nobody", "no-such-container", "/x", "/y"),
    ];
    client
        .create_container(&req)
        .await
        .context("CreateContainer consumer with shared mounts")?;
    let consumer = Container::attach(client, "consumer");
    let readers = consumer.readers("", false);
    consumer.start().await.context("StartContainer consumer")?;
    let status = consumer.wait("").await.context("WaitProcess consumer")?;
    let (stdout, stderr) = readers.finish().await?;
    let stdout = String::from_utf8_lossy(&stdout.bytes).into_owned();
    ensure!(
        status == 0 && stdout == "written-by-the-producer\n1\n",
        "consumer: status {status}, stdout {stdout:?}, stderr {:?}",
        String::from_utf8_lossy(&stderr.bytes)
    );
    consumer
        .remove()
        .await
        .context("RemoveContainer consumer")?;

    // The consumer's write is in the producer's tmpfs.
    let check = ContainerSpec::new(["cat", "/shared-src/reply"]).process_proto()?;
    producer
        .exec("check", check)
        .await
        .context("ExecProcess in the producer")?;
    let readers = producer.readers("check", false);
    let status = producer.wait("check").await?;
    let (stdout, _) = readers.finish().await?;
    ensure!(
        status == 0 && stdout.bytes == b"back\n",
        "producer sees {:?} (status {status})",
        String::from_utf8_lossy(&stdout.bytes)
    );
    producer.signal("", 9).await?;
    producer.wait("").await?;
    producer
        .remove()
        .await
        .context("RemoveContainer producer")?;
    Ok(())
}
