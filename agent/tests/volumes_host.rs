//! Volumes on the host, with real mounts kept in the agent's own mount namespace (the
//! `hull-agent` binary under `unshare --mount`): an ephemeral tmpfs resized by
//! `UpdateEphemeralMounts`, `GetVolumeStats` against the kernel's own `statvfs` of the
//! same mount, an ext4 volume on a loop device grown by `ResizeVolume` after its backing
//! file grew, and the refusals of each method. Swap is left to the VM test
//! (`tests/tests/volumes.rs`): turning it on here would change the host.
//!
//! They need root, util-linux (`unshare`, `nsenter`, `losetup`), e2fsprogs (`mkfs.ext4`)
//! and loop devices; without them they fail, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use hull_protocols::AgentClient;
use hull_protocols::agent::{CreateSandboxRequest, Storage};
use hull_protocols::csi::VolumeStatsResponse;
use hull_protocols::csi::volume_usage::Unit;
use hull_testkit::agent::Isolation;
use hull_testkit::{HostAgent, refusal, require};
use nix::sys::statvfs::statvfs;
use ttrpc::Code;

fn start_agent() -> HostAgent {
    require::root("testing mounts");
    require::tool("unshare", "util-linux");
    HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .isolation(Isolation::MountNamespace)
        .run_dir("run/kata-containers")
        .env("HULL_AGENT_HOTPLUG_TIMEOUT", "1")
        .start()
}

fn ephemeral(mount_point: &Path, options: &[&str]) -> Storage {
    Storage {
        driver: "ephemeral".into(),
        source: "tmpfs".into(),
        fstype: "tmpfs".into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        mount_point: mount_point.display().to_string(),
        ..Default::default()
    }
}

/// (total, used, available) of `unit` in a GetVolumeStats answer.
fn usage(stats: &VolumeStatsResponse, unit: Unit) -> (u64, u64, u64) {
    let u = stats
        .usage
        .iter()
        .find(|u| u.unit.enum_value() == Ok(unit))
        .unwrap_or_else(|| panic!("no {unit:?} in {stats:?}"));
    (u.total, u.used, u.available)
}

/// The same figures from the kernel, through the agent's `/proc/PID/root`.
fn kernel_figures(agent: &HostAgent, path: &Path) -> ((u64, u64, u64), (u64, u64, u64)) {
    let s = statvfs(&agent.in_agent(path)).unwrap();
    let unit = s.fragment_size();
    (
        (
            s.blocks() * unit,
            (s.blocks() - s.blocks_free()) * unit,
            s.blocks_available() * unit,
        ),
        (s.files(), s.files() - s.files_free(), s.files_free()),
    )
}

async fn stats(client: &AgentClient, path: &Path) -> VolumeStatsResponse {
    client
        .get_volume_stats(&path.display().to_string())
        .await
        .unwrap_or_else(|e| panic!("GetVolumeStats {}: {e}", path.display()))
}

#[tokio::test]
async fn an_ephemeral_volume_is_resized_and_its_figures_are_the_kernels() {
    let agent = start_agent();
    let run = agent.run_dir().to_path_buf();
    let memory = run.join("sandbox/ephemeral/memory");
    let local = run.join("sandbox/local/plain");
    let client = agent.client().await;
    client
        .create_sandbox(&CreateSandboxRequest {
            storages: vec![
                ephemeral(&memory, &["size=1m", "nosuid"]),
                Storage {
                    driver: "local".into(),
                    mount_point: local.display().to_string(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .await
        .expect("CreateSandbox");
    std::fs::write(agent.in_agent(&memory.join("data")), vec![7u8; 64 * 1024]).unwrap();

    let before = stats(&client, &memory).await;
    assert_eq!(usage(&before, Unit::BYTES).0, 1 << 20);
    let (bytes, inodes) = kernel_figures(&agent, &memory);
    assert_eq!(usage(&before, Unit::BYTES), bytes);
    assert_eq!(usage(&before, Unit::INODES), inodes);
    assert!(bytes.1 >= 64 * 1024, "the data counts as used: {bytes:?}");
    let condition = before.volume_condition.clone().into_option().unwrap();
    assert!(!condition.abnormal);

    // Kata's runtime: "remount" and the new size (and the fsgid it read on the host).
    client
        .update_ephemeral_mounts(vec![ephemeral(&memory, &["remount", "size=4m", "fsgid=0"])])
        .await
        .expect("UpdateEphemeralMounts");
    let after = stats(&client, &memory).await;
    assert_eq!(usage(&after, Unit::BYTES).0, 4 << 20, "{after:?}");
    assert_eq!(
        usage(&after, Unit::BYTES),
        kernel_figures(&agent, &memory).0
    );
    assert_eq!(
        std::fs::read(agent.in_agent(&memory.join("data")))
            .unwrap()
            .len(),
        64 * 1024,
        "the data survived the remount"
    );
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", agent.mount_namespace_pid()))
            .unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.contains(&memory.display().to_string()))
        .unwrap();
    assert!(
        line.contains("nosuid"),
        "the mount's own flags stay: {line}"
    );

    let path = |p: &Path| p.display().to_string();
    let outside = agent.dir().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, run.join("escape")).unwrap();
    refusal(
        "UpdateEphemeralMounts of a local storage",
        client.update_ephemeral_mounts(vec![Storage {
            driver: "local".into(),
            options: vec!["mode=0700".into()],
            mount_point: path(&local),
            ..Default::default()
        }]),
        Code::INVALID_ARGUMENT,
        "only ephemeral",
    )
    .assert()
    .await;
    refusal(
        "UpdateEphemeralMounts of a mount point nobody holds",
        client.update_ephemeral_mounts(vec![ephemeral(
            &run.join("sandbox/ephemeral/none"),
            &["remount", "size=2m"],
        )]),
        Code::NOT_FOUND,
        "no storage is held",
    )
    .assert()
    .await;
    refusal(
        "UpdateEphemeralMounts outside the agent's directory",
        client.update_ephemeral_mounts(vec![ephemeral(Path::new("/tmp"), &["size=2m"])]),
        Code::INVALID_ARGUMENT,
        "must be under",
    )
    .assert()
    .await;
    refusal(
        "UpdateEphemeralMounts shrinking below what is used",
        client.update_ephemeral_mounts(vec![ephemeral(&memory, &["remount", "size=16k"])]),
        Code::INVALID_ARGUMENT,
        "EINVAL",
    )
    .assert()
    .await;
    refusal(
        "UpdateEphemeralMounts with a bind option",
        client.update_ephemeral_mounts(vec![ephemeral(&memory, &["bind"])]),
        Code::INVALID_ARGUMENT,
        "bind and propagation",
    )
    .assert()
    .await;
    refusal(
        "GetVolumeStats of /etc",
        client.get_volume_stats("/etc"),
        Code::INVALID_ARGUMENT,
        "must be under",
    )
    .assert()
    .await;
    refusal(
        "GetVolumeStats with ..",
        client.get_volume_stats(&format!("{}/../../etc", path(&run))),
        Code::INVALID_ARGUMENT,
        "'..'",
    )
    .assert()
    .await;
    refusal(
        "GetVolumeStats through a symlink out",
        client.get_volume_stats(&path(&run.join("escape"))),
        Code::INVALID_ARGUMENT,
        "resolves outside",
    )
    .assert()
    .await;
    refusal(
        "GetVolumeStats of a missing path",
        client.get_volume_stats(&path(&run.join("sandbox/nothing"))),
        Code::NOT_FOUND,
        "no such file",
    )
    .assert()
    .await;
    refusal(
        "GetVolumeStats of a directory with no volume",
        client.get_volume_stats(&path(&local)),
        Code::NOT_FOUND,
        "not a mount point",
    )
    .assert()
    .await;
    refusal(
        "ResizeVolume of a tmpfs",
        client.resize_volume(&path(&memory), 8 << 20),
        Code::FAILED_PRECONDITION,
        "ext4 only",
    )
    .assert()
    .await;
    refusal(
        "ResizeVolume to 0 bytes",
        client.resize_volume(&path(&memory), 0),
        Code::INVALID_ARGUMENT,
        "not 0",
    )
    .assert()
    .await;
    refusal(
        "AddSwapPath outside the agent's directory",
        client.add_swap_path("/etc/passwd"),
        Code::INVALID_ARGUMENT,
        "must be beneath",
    )
    .assert()
    .await;
    refusal(
        "AddSwapPath of a missing file",
        client.add_swap_path(&path(&memory.join("swapfile"))),
        Code::NOT_FOUND,
        "no such file",
    )
    .assert()
    .await;
    refusal(
        "AddSwap at a bad PCI path",
        client.add_swap(&[0x40]),
        Code::INVALID_ARGUMENT,
        "invalid PCI path",
    )
    .assert()
    .await;
    // RemoveStaleVirtiofsShareMounts with no share: nothing to look at.
    client
        .remove_stale_virtiofs_share_mounts()
        .await
        .expect("RemoveStaleVirtiofsShareMounts without a share");
    client.check().await.expect("the agent still serves");
}

/// A loop device over a file, detached on drop.
struct LoopDevice {
    device: String,
}

impl LoopDevice {
    fn attach(image: &Path) -> Self {
        require::tool("losetup", "util-linux");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .expect("running losetup");
        assert!(
            out.status.success(),
            "this test needs a loop device: losetup --find --show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            device: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }

    /// Makes the kernel see the backing file's new size (`losetup -c`).
    fn refresh_capacity(&self) {
        let status = Command::new("losetup")
            .args(["-c", &self.device])
            .status()
            .unwrap();
        assert!(status.success(), "losetup -c {}", self.device);
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// Whether this process (and so the agent it starts) has CAP_SYS_RESOURCE, which ext4's
/// online resize requires.
fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap();
    effective & (1 << CAP_SYS_RESOURCE) != 0
}

fn mkfs_ext4(image: &Path, size_mib: u64) {
    let file = std::fs::File::create(image).unwrap();
    file.set_len(size_mib << 20).unwrap();
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096"])
        .arg(image)
        .status()
        .expect("this test needs mkfs.ext4 (e2fsprogs)");
    assert!(status.success(), "mkfs.ext4");
}

#[tokio::test]
async fn an_ext4_volume_grows_online_after_its_disk_grew() {
    let agent = start_agent();
    let run = agent.run_dir().to_path_buf();
    let image: PathBuf = agent.dir().join("volume.ext4");
    mkfs_ext4(&image, 16);
    let disk = LoopDevice::attach(&image);
    let volume = run.join("sandbox/storage/grow");
    let client = agent.client().await;
    client
        .create_sandbox(&CreateSandboxRequest {
            storages: vec![Storage {
                driver: "mmioblk".into(),
                source: disk.device.clone(),
                fstype: "ext4".into(),
                mount_point: volume.display().to_string(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("CreateSandbox with the loop device's ext4");
    let path = volume.display().to_string();
    let before = stats(&client, &volume).await;
    assert_eq!(
        usage(&before, Unit::BYTES),
        kernel_figures(&agent, &volume).0
    );
    let (total_before, _, _) = usage(&before, Unit::BYTES);

    // The disk has not grown yet: refused, nothing changes.
    refusal(
        "ResizeVolume beyond the disk",
        client.resize_volume(&path, 64 << 20),
        Code::FAILED_PRECONDITION,
        "grow the disk first",
    )
    .assert()
    .await;

    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    disk.refresh_capacity();
    if !has_sys_resource() {
        // The kernel's own check (ext4 wants CAP_SYS_RESOURCE, which this host's root
        // lacks): the refusal must say so. The growth itself is checked in the VM test.
        eprintln!("no CAP_SYS_RESOURCE here: the growth is checked by tests/tests/volumes.rs");
        refusal(
            "ResizeVolume without CAP_SYS_RESOURCE",
            client.resize_volume(&path, 64 << 20),
            Code::PERMISSION_DENIED,
            "EPERM",
        )
        .assert()
        .await;
    } else {
        client
            .resize_volume(&path, 64 << 20)
            .await
            .expect("ResizeVolume after the disk grew");
        let after = stats(&client, &volume).await;
        let (total_after, _, _) = usage(&after, Unit::BYTES);
        assert_eq!(
            usage(&after, Unit::BYTES),
            kernel_figures(&agent, &volume).0
        );
        assert!(
            total_after > total_before + (40 << 20),
            "grew from {total_before} to only {total_after}"
        );
        assert!(usage(&after, Unit::INODES).0 > usage(&before, Unit::INODES).0);
        refusal(
            "ResizeVolume shrinking",
            client.resize_volume(&path, 8 << 20),
            Code::INVALID_ARGUMENT,
            "cannot shrink",
        )
        .assert()
        .await;
        // The same size again changes nothing and is no error.
        client
            .resize_volume(&path, 64 << 20)
            .await
            .expect("ResizeVolume to the current size");
    }
    client.destroy_sandbox().await.expect("DestroySandbox");
    drop(agent);
    drop(disk);
}
