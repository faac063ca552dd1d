//! Storages in a real guest, through the agent API only: a virtio-fs share, a virtio-blk
//! disk found by its Kata PCI path, a virtio-pmem disk, and the errors for what is not
//! there (within `agent.hotplug_timeout`) or what escapes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::vm::{Disk, VirtioFsShare, Vm, VmConfig};
use hull_protocols::agent::{CreateSandboxRequest, Storage};
use hull_protocols::client::ClientError;
use hull_protocols::ttrpc::Code;
use hull_testkit::check_refused;

const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);
/// The guest's `agent.hotplug_timeout` in these tests.
const HOTPLUG_TIMEOUT_SECS: u64 = 2;
/// Where Kata's runtime mounts the sandbox's virtio-fs share.
const SHARED: &str = "/run/kata-containers/shared/containers";
/// The slot the test disk sits in: Kata PCI path "10".
const BLK_SLOT: u8 = 0x10;

/// An ext4 image of `size_mib` holding `tree` (made with `mkfs.ext4 -d`).
fn ext4_image(path: &Path, tree: &Path, size_mib: u32) -> Result<()> {
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(tree)
        .arg(path)
        .arg(format!("{size_mib}M"))
        .stdout(std::process::Stdio::null())
        .status()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    ensure!(status.success(), "mkfs.ext4 failed: {status}");
    Ok(())
}

/// A disk tree with a marker file and a symlink out of it, as a hostile image would have.
fn disk_tree(dir: &Path, marker: &str) -> Result<PathBuf> {
    let tree = dir.join(format!("{marker}-tree"));
    std::fs::create_dir_all(tree.join("data"))?;
    std::fs::write(tree.join("data").join(marker), marker)?;
    std::os::unix::fs::symlink("/", tree.join("escape"))?;
    Ok(tree)
}

fn storage(
    driver: &str,
    source: &str,
    fstype: &str,
    options: &[&str],
    mount_point: &str,
) -> Storage {
    Storage {
        driver: driver.into(),
        source: source.into(),
        fstype: fstype.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        mount_point: mount_point.into(),
        ..Default::default()
    }
}

fn expect_error(result: Result<(), ClientError>, code: Code, needle: &str) -> Result<()> {
    check_refused("CreateSandbox", result, code, needle).map_err(anyhow::Error::msg)
}

fn config(dir: &Path) -> Result<VmConfig> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config
        .extra_cmdline
        .push(format!("agent.hotplug_timeout={HOTPLUG_TIMEOUT_SECS}"));
    let blk = dir.join("blk.ext4");
    ext4_image(&blk, &disk_tree(dir, "from-blk")?, 8)?;
    config.disks.push(Disk::virtio_blk(blk, BLK_SLOT));
    Ok(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_mounts_a_virtio_fs_share_a_pci_disk_and_a_pmem_disk() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let share = dir.path().join("share");
    std::fs::create_dir(&share)?;
    let mut config = config(dir.path())?;
    config.virtio_fs.push(VirtioFsShare {
        tag: "kataShared".into(),
        dir: share.clone(),
    });
    let pmem = dir.path().join("pmem.ext4");
    ext4_image(&pmem, &disk_tree(dir.path(), "from-pmem")?, 16)?;
    config.disks.push(Disk::virtio_pmem(&pmem)?);

    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    let details = client.guest_details().await.context("GetGuestDetails")?;
    let handlers = details
        .agent_details
        .into_option()
        .context("no agent details")?
        .storage_handlers;
    for driver in ["virtio-fs", "blk", "nvdimm", "ephemeral", "local"] {
        ensure!(
            handlers.iter().any(|h| h == driver),
            "{driver} missing: {handlers:?}"
        );
    }

    let req = CreateSandboxRequest {
        hostname: "hull-e2e".into(),
        dns: vec!["nameserver 10.0.2.3".into()],
        sandbox_id: "storage-e2e".into(),
        storages: vec![
            storage(
                "virtio-fs",
                "kataShared",
                "virtiofs",
                &[],
                &format!("{SHARED}/"),
            ),
            // Made by the guest inside the share: the host must see it.
            storage(
                "local",
                "",
                "",
                &["mode=0750"],
                &format!("{SHARED}/made-by-guest"),
            ),
            storage(
                "blk",
                &format!("{BLK_SLOT:02x}"),
                "ext4",
                &["ro"],
                "/run/kata-containers/sandbox/storage/blk",
            ),
            // Exists only on the disk: resolving it proves the disk is mounted.
            storage(
                "local",
                "",
                "",
                &[],
                "/run/kata-containers/sandbox/storage/blk/data",
            ),
            storage(
                "nvdimm",
                "/dev/pmem0",
                "ext4",
                &["ro", "dax"],
                "/run/kata-containers/sandbox/storage/pmem",
            ),
            storage(
                "local",
                "",
                "",
                &[],
                "/run/kata-containers/sandbox/storage/pmem/data",
            ),
        ],
        ..Default::default()
    };
    let started = Instant::now();
    client
        .create_sandbox(&req)
        .await
        .context("CreateSandbox with virtio-fs, blk and nvdimm")?;
    eprintln!("CreateSandbox took {:?}", started.elapsed());
    let made = share.join("made-by-guest");
    ensure!(
        made.is_dir(),
        "the guest's directory did not reach the share"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&made)?.permissions());
    ensure!(mode & 0o777 == 0o750, "mode {mode:o}");

    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    ensure!(
        vm.console().contains("init: powering off"),
        "no orderly power-off after DestroySandbox"
    );
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_devices_and_escapes_fail_within_the_hotplug_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config(dir.path())?;
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    let timeout = Duration::from_secs(HOTPLUG_TIMEOUT_SECS);

    let started = Instant::now();
    let result = client
        .create_sandbox(&CreateSandboxRequest {
            storages: vec![storage("virtio-fs", "noSuchTag", "virtiofs", &[], SHARED)],
            ..Default::default()
        })
        .await;
    let took = started.elapsed();
    expect_error(result, Code::DEADLINE_EXCEEDED, "\"noSuchTag\"")?;
    ensure!(
        took >= timeout && took < timeout + Duration::from_secs(10),
        "a missing tag took {took:?}, expected about {timeout:?}"
    );

    let started = Instant::now();
    let result = client
        .create_sandbox(&CreateSandboxRequest {
            storages: vec![storage(
                "blk",
                "1e",
                "ext4",
                &["ro"],
                "/run/kata-containers/sandbox/storage/none",
            )],
            ..Default::default()
        })
        .await;
    let took = started.elapsed();
    expect_error(result, Code::DEADLINE_EXCEEDED, "PCI path 1e")?;
    ensure!(took >= timeout, "a missing disk failed after {took:?}");

    // The disk mounts, but a symlink on it pointing at / cannot carry a mount point
    // out; the disk's mount is rolled back.
    expect_error(
        client
            .create_sandbox(&CreateSandboxRequest {
                storages: vec![
                    storage(
                        "blk",
                        &format!("{BLK_SLOT:02x}"),
                        "ext4",
                        &["ro"],
                        "/run/kata-containers/sandbox/storage/blk",
                    ),
                    storage(
                        "ephemeral",
                        "tmpfs",
                        "tmpfs",
                        &[],
                        "/run/kata-containers/sandbox/storage/blk/escape/etc",
                    ),
                ],
                ..Default::default()
            })
            .await,
        Code::INVALID_ARGUMENT,
        "resolves outside",
    )?;
    expect_error(
        client
            .create_sandbox(&CreateSandboxRequest {
                storages: vec![storage("watchable-bind", "x", "", &[], SHARED)],
                ..Default::default()
            })
            .await,
        Code::INVALID_ARGUMENT,
        "supported: virtio-fs",
    )?;

    // After all that, a good sandbox still comes up (the disk mounts again: it was
    // released), and the VM still powers off.
    client
        .create_sandbox(&CreateSandboxRequest {
            storages: vec![
                storage(
                    "blk",
                    &format!("{BLK_SLOT:02x}"),
                    "ext4",
                    &["ro"],
                    "/run/kata-containers/sandbox/storage/blk",
                ),
                storage(
                    "ephemeral",
                    "tmpfs",
                    "tmpfs",
                    &["size=1m"],
                    "/run/kata-containers/sandbox/ephemeral/scratch",
                ),
            ],
            ..Default::default()
        })
        .await
        .context("CreateSandbox after the refusals")?;
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}
