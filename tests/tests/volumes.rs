//! Volumes and swap in a real guest, through the agent API only, on one booted guest:
//!
//! - `UpdateEphemeralMounts` resizes a tmpfs (a container's `df` sees the new size);
//! - `GetVolumeStats` of an ext4 volume on a writable virtio-blk disk gives the figures
//!   the guest kernel gives a container's `stat -f` of the same file system;
//! - `ResizeVolume` grows the volume's ext4 after QMP `block_resize` grew its disk;
//! - `AddSwap` turns swap on on a disk hot-plugged through QMP and found by its PCI
//!   path, `AddSwapPath` on a swap file inside the volume: `/proc/swaps` lists both;
//! - `RemoveStaleVirtiofsShareMounts` drops the guest's virtio-fs submount of a host
//!   mount in the share after the host unmounted it;
//! - bad inputs are refused with precise codes, and the agent keeps serving.
//!
//! The swap areas are made on the host with `mkswap` (util-linux) when it is there, else
//! with a header written here (the kernel's `swap_header`, version 1). The stale-mount
//! step mounts a tmpfs in the host's share directory: it needs root on the host.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::guest::{SandboxGuest, sandbox_request};
use hull_e2e::vm::{Disk, Hotplug, VmConfig};
use hull_protocols::agent::Storage;
use hull_protocols::csi::VolumeStatsResponse;
use hull_protocols::csi::volume_usage::Unit;
use hull_protocols::ttrpc::Code;
use hull_testkit::refusal;

/// The writable ext4 volume's slot: Kata PCI path "10".
const VOLUME_SLOT: u8 = 0x10;
/// The swap disk is hot-plugged into root port 0: slot 0 behind the port's slot.
fn swap_pci_path() -> [u32; 2] {
    [u32::from(Hotplug::root_port_slot(0)), 0]
}
const VOLUME: &str = "/run/kata-containers/sandbox/storage/vol";
const EPHEMERAL: &str = "/run/kata-containers/sandbox/ephemeral/scratch";
const SHARED: &str = "/run/kata-containers/shared/containers";
const PAGE: usize = 4096;
/// The volume's disk after QMP `block_resize` (32 MiB at boot).
const GROWN_BYTES: u64 = 64 << 20;

/// Fills `path` with `bytes` of a non-zero pattern (no holes, even after `mkfs.ext4 -d`
/// copies it) and makes it a swap area.
fn swap_area(path: &Path, bytes: usize) -> Result<()> {
    std::fs::write(path, vec![0x5a; bytes])?;
    let mkswap = ["/usr/sbin/mkswap", "/sbin/mkswap"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match mkswap {
        Some(mkswap) => {
            let out = Command::new(mkswap).arg(path).output()?;
            ensure!(
                out.status.success(),
                "mkswap: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => write_swap_header(path, bytes)?,
    }
    Ok(())
}

/// The kernel's `union swap_header` (include/linux/swap.h), version 1, for 4 KiB pages:
/// 1024 bytes of boot block, then version, last page, bad-page count, UUID and label; the
/// signature `SWAPSPACE2` ends the first page.
fn write_swap_header(path: &Path, bytes: usize) -> Result<()> {
    let mut image = std::fs::read(path)?;
    let header = &mut image[..PAGE];
    header.fill(0);
    let last_page = u32::try_from(bytes / PAGE - 1)?;
    header[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    header[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    header[1036..1052].copy_from_slice(b"hull-test-swap-0");
    header[PAGE - 10..].copy_from_slice(b"SWAPSPACE2");
    std::fs::write(path, image)?;
    Ok(())
}

/// A writable ext4 image of `size_mib` with `data/marker` and a 4 MiB swap file.
fn volume_image(dir: &Path, size_mib: u32) -> Result<PathBuf> {
    let tree = dir.join("volume-tree");
    std::fs::create_dir_all(tree.join("data"))?;
    std::fs::write(tree.join("data/marker"), "volume")?;
    swap_area(&tree.join("swapfile"), 4 << 20)?;
    let image = dir.join("volume.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg(format!("{size_mib}M"))
        .status()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    ensure!(status.success(), "mkfs.ext4 failed: {status}");
    Ok(image)
}

fn storage(driver: &str, source: &str, fstype: &str, options: &[&str], mount: &str) -> Storage {
    Storage {
        driver: driver.into(),
        source: source.into(),
        fstype: fstype.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        mount_point: mount.into(),
        ..Default::default()
    }
}

/// (total, used, available).
type Figures = (u64, u64, u64);

/// (total, used, available) of `unit`.
fn usage(stats: &VolumeStatsResponse, unit: Unit) -> Result<Figures> {
    let u = stats
        .usage
        .iter()
        .find(|u| u.unit.enum_value() == Ok(unit))
        .with_context(|| format!("no {unit:?} in {stats:?}"))?;
    Ok((u.total, u.used, u.available))
}

/// What an inspector container saw: the guest's mount points, `/proc/swaps`, and
/// `stat -f` of the bound volumes as `name block total free available files ffree`.
#[derive(Debug)]
struct Inspection {
    mounts: Vec<String>,
    swaps: Vec<String>,
    statfs: Vec<(String, [u64; 6])>,
}

impl Inspection {
    /// Bytes (total, used, available) and inodes (total, used, free) of a bound volume.
    fn figures(&self, name: &str) -> Result<(Figures, Figures)> {
        let [block, total, free, available, files, ffree] = self
            .statfs
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("no stat -f of {name}: {self:?}"))?
            .1;
        Ok((
            (total * block, (total - free) * block, available * block),
            (files, files - ffree, ffree),
        ))
    }
}

/// Runs an inspector in the guest's PID namespace with `binds` (guest path → name under
/// `/v`) bound read-only.
async fn inspect(guest: &SandboxGuest, id: &str, binds: &[(&str, &str)]) -> Result<Inspection> {
    let mut script = String::from(
        "echo @mounts; while read -r _ _ _ _ point _ rest; do \
           echo \"$point ${rest#*- }\"; done < /proc/1/mountinfo; \
         echo @swaps; cat /proc/swaps; echo @statfs; ",
    );
    let mut spec = ContainerSpec::shell("");
    for (source, name) in binds {
        script.push_str(&format!(
            "stat -f -c '{name} %S %b %f %a %c %d' /v/{name}; "
        ));
        spec = spec.bind_read_only(source, &format!("/v/{name}"));
    }
    script.push_str("true");
    let spec = ContainerSpec {
        args: ContainerSpec::shell(&script).args,
        ..spec
    }
    .in_guest_pid_namespace();
    let out = guest.run_container(id, &spec).await?;
    ensure!(out.status == 0, "{id}: {out:?} {}", out.stderr.text());
    let text = out.stdout.text();
    let section = |name: &str| -> Vec<String> {
        text.split('@')
            .find_map(|s| s.strip_prefix(name))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let statfs = section("statfs\n")
        .iter()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next().unwrap_or_default().to_string();
            let numbers: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
            let numbers: [u64; 6] = numbers
                .try_into()
                .map_err(|n| anyhow::anyhow!("stat -f line {line:?}: {n:?}"))?;
            Ok((name, numbers))
        })
        .collect::<Result<_>>()?;
    Ok(Inspection {
        mounts: section("mounts\n"),
        swaps: section("swaps\n"),
        statfs,
    })
}

/// A tmpfs mounted on the host, unmounted on drop.
struct HostMount(PathBuf);

impl HostMount {
    fn tmpfs(path: &Path) -> Result<Self> {
        hull_testkit::require::root(
            "mounting a tmpfs in the host's share directory (a host mount the guest sees as \
             a virtio-fs submount)",
        );
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "hull-stale"])
            .arg(path)
            .status()
            .context("running mount")?;
        ensure!(status.success(), "mount -t tmpfs on {}", path.display());
        Ok(Self(path.to_path_buf()))
    }

    fn unmount(&mut self) -> Result<()> {
        let status = Command::new("umount").arg("-l").arg(&self.0).status()?;
        ensure!(status.success(), "umount {}", self.0.display());
        self.0 = PathBuf::new();
        Ok(())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_grow_report_and_swap_and_stale_share_mounts_go() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config.extra_cmdline.push("agent.hotplug_timeout=5".into());
    let volume_image = volume_image(dir.path(), 32)?;
    config
        .disks
        .push(Disk::virtio_blk_writable(&volume_image, VOLUME_SLOT));
    let swap_disk = dir.path().join("swap.img");
    swap_area(&swap_disk, 16 << 20)?;
    config.hotplug = Some(Hotplug {
        max_cpus: 1,
        memory_slots: 1,
        max_memory_mib: 1024,
        root_ports: 1,
    });

    let mut guest = SandboxGuest::boot_without_sandbox(config).await?;
    let mut request = sandbox_request("volumes-e2e", "hull");
    request.storages.extend([
        storage("blk", &format!("{VOLUME_SLOT:02x}"), "ext4", &[], VOLUME),
        storage("ephemeral", "tmpfs", "tmpfs", &["size=1m"], EPHEMERAL),
    ]);
    guest
        .client
        .create_sandbox(&request)
        .await
        .context("CreateSandbox with the volume and the tmpfs")?;
    let client = guest.client.clone();

    // A host mount inside the share: the guest sees it as a virtio-fs submount once a
    // container's rootfs is looked up in it.
    let mut host_mount = HostMount::tmpfs(&guest.share().join("stale"))?;
    let stale = guest
        .run_container("stale", &ContainerSpec::new(["true"]))
        .await
        .context("a container whose rootfs is in the host mount")?;
    ensure!(stale.status == 0, "stale container: {stale:?}");

    // The tmpfs: 1 MiB, then 8 MiB, as a container's df sees it.
    let before = client.get_volume_stats(EPHEMERAL).await?;
    ensure!(
        usage(&before, Unit::BYTES)?.0 == 1 << 20,
        "tmpfs before: {before:?}"
    );
    client
        .update_ephemeral_mounts(vec![storage(
            "ephemeral",
            "tmpfs",
            "tmpfs",
            &["remount", "size=8M"],
            EPHEMERAL,
        )])
        .await
        .context("UpdateEphemeralMounts")?;
    let resized = client.get_volume_stats(EPHEMERAL).await?;
    ensure!(
        usage(&resized, Unit::BYTES)?.0 == 8 << 20,
        "tmpfs after: {resized:?}"
    );

    // Swap on a disk hot-plugged (QMP) into root port 0, found by its PCI path, and on
    // the file inside the volume.
    let qmp = guest.vm_mut().qmp()?;
    qmp.execute(
        "blockdev-add",
        Some(serde_json::json!({
            "node-name": "swap-disk",
            "driver": "raw",
            "file": { "driver": "file", "filename": swap_disk },
        })),
    )
    .context("blockdev-add of the swap disk")?;
    qmp.execute(
        "device_add",
        Some(serde_json::json!({
            "driver": "virtio-blk-pci", "id": "swap-blk", "drive": "swap-disk", "bus": "rp0",
        })),
    )
    .context("device_add of the swap disk into rp0")?;
    client.add_swap(&swap_pci_path()).await.context("AddSwap")?;
    let swapfile = format!("{VOLUME}/swapfile");
    client
        .add_swap_path(&swapfile)
        .await
        .context("AddSwapPath")?;

    let seen = inspect(
        &guest,
        "inspect-0",
        &[(EPHEMERAL, "scratch"), (VOLUME, "vol")],
    )
    .await?;
    eprintln!("guest: {seen:#?}");
    let (tmpfs_bytes, _) = seen.figures("scratch")?;
    ensure!(tmpfs_bytes.0 == 8 << 20, "df of the tmpfs: {tmpfs_bytes:?}");
    let stats = client.get_volume_stats(VOLUME).await?;
    let (bytes, inodes) = seen.figures("vol")?;
    ensure!(
        usage(&stats, Unit::BYTES)? == bytes,
        "GetVolumeStats {stats:?} vs the guest's statfs {bytes:?}"
    );
    ensure!(
        usage(&stats, Unit::INODES)? == inodes,
        "GetVolumeStats {stats:?} vs the guest's statfs {inodes:?}"
    );
    ensure!(
        seen.swaps.len() == 3
            && seen
                .swaps
                .iter()
                .any(|l| l.starts_with("/dev/vd") && l.contains("partition"))
            && seen
                .swaps
                .iter()
                .any(|l| l.starts_with(&swapfile) && l.contains("file")),
        "/proc/swaps: {:#?}",
        seen.swaps
    );

    // ResizeVolume: the host grows the disk (QMP block_resize, as a runtime would through
    // its VMM), then the guest's ext4 grows into it.
    let total_before = usage(&stats, Unit::BYTES)?.0;
    guest
        .vm_mut()
        .qmp()?
        .execute(
            "block_resize",
            Some(serde_json::json!({"device": "disk0", "size": GROWN_BYTES})),
        )
        .context("QMP block_resize of the volume's disk")?;
    // The guest learns the disk's new size from virtio's configuration interrupt; until
    // then the agent refuses (the disk is too small), and nothing changes.
    let started = std::time::Instant::now();
    loop {
        match client.resize_volume(VOLUME, GROWN_BYTES).await {
            Ok(()) => break,
            Err(e)
                if e.rpc_code() == Some(Code::FAILED_PRECONDITION)
                    && started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("ResizeVolume after block_resize"),
        }
    }
    let grown = client.get_volume_stats(VOLUME).await?;
    let total_after = usage(&grown, Unit::BYTES)?.0;
    ensure!(
        total_after > total_before + (24 << 20),
        "the volume grew from {total_before} to only {total_after} bytes"
    );
    let seen_grown = inspect(&guest, "inspect-grown", &[(VOLUME, "vol")]).await?;
    ensure!(
        usage(&grown, Unit::BYTES)? == seen_grown.figures("vol")?.0,
        "GetVolumeStats {grown:?} vs the guest's statfs {:?}",
        seen_grown.figures("vol")?
    );
    refusal(
        "ResizeVolume shrinking the grown volume",
        client.resize_volume(VOLUME, 16 << 20),
        Code::INVALID_ARGUMENT,
        "cannot shrink",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;

    let submount = format!("{SHARED}/stale virtiofs");
    ensure!(
        seen.mounts.iter().any(|m| m.starts_with(&submount)),
        "no virtio-fs submount of the host mount: {:#?}",
        seen.mounts
    );

    // The host unmounts and removes it: the guest still lists its submount until
    // RemoveStaleVirtiofsShareMounts looks it up.
    host_mount.unmount()?;
    std::fs::remove_dir_all(guest.share().join("stale"))?;
    let still = inspect(&guest, "inspect-1", &[]).await?;
    ensure!(
        still.mounts.iter().any(|m| m.starts_with(&submount)),
        "the stale submount went before the call: {:#?}",
        still.mounts
    );
    client
        .remove_stale_virtiofs_share_mounts()
        .await
        .context("RemoveStaleVirtiofsShareMounts")?;
    let after = inspect(&guest, "inspect-2", &[]).await?;
    ensure!(
        !after.mounts.iter().any(|m| m.starts_with(&submount)),
        "the stale submount is still there: {:#?}",
        after.mounts
    );
    ensure!(
        after
            .mounts
            .iter()
            .any(|m| m.starts_with(&format!("{SHARED} virtiofs"))),
        "the share itself must stay: {:#?}",
        after.mounts
    );

    refusal(
        "AddSwap on the disk already swapping",
        client.add_swap(&swap_pci_path()),
        Code::FAILED_PRECONDITION,
        "already in use",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "AddSwap on the mounted volume's disk",
        client.add_swap(&[u32::from(VOLUME_SLOT)]),
        Code::FAILED_PRECONDITION,
        "swapon",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "AddSwap at a slot out of range",
        client.add_swap(&[0x20]),
        Code::INVALID_ARGUMENT,
        "invalid PCI path",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "AddSwapPath of a file with no swap signature",
        client.add_swap_path(&format!("{VOLUME}/data/marker")),
        Code::FAILED_PRECONDITION,
        "no swap signature",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "AddSwapPath outside the agent's directory",
        client.add_swap_path("/proc/self/exe"),
        Code::INVALID_ARGUMENT,
        "must be beneath",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "AddSwapPath of a missing file",
        client.add_swap_path(&format!("{VOLUME}/none")),
        Code::NOT_FOUND,
        "no such file",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "GetVolumeStats of the guest's root",
        client.get_volume_stats("/"),
        Code::INVALID_ARGUMENT,
        "must be under",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "GetVolumeStats of a directory inside the volume",
        client.get_volume_stats(&format!("{VOLUME}/data")),
        Code::NOT_FOUND,
        "not a mount point",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "ResizeVolume of the tmpfs",
        client.resize_volume(EPHEMERAL, 64 << 20),
        Code::FAILED_PRECONDITION,
        "ext4 only",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "ResizeVolume beyond the disk",
        client.resize_volume(VOLUME, 1 << 30),
        Code::FAILED_PRECONDITION,
        "grow the disk first",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    refusal(
        "UpdateEphemeralMounts of the volume",
        client.update_ephemeral_mounts(vec![storage("blk", "10", "ext4", &["remount"], VOLUME)]),
        Code::INVALID_ARGUMENT,
        "only ephemeral",
    )
    .check()
    .await
    .map_err(anyhow::Error::msg)?;
    client.check().await.context("the agent still serves")?;
    guest.power_off().await?;
    Ok(())
}
