//! Disk images in real VMs: the same image file (built by `just image`) boots from a QEMU
//! NVDIMM and from virtio-pmem with its root mapped with DAX, and from virtio-blk without;
//! for ext4 and erofs. Each boot checks that the agent answers over vsock, that the
//! guest itself reports how `/` is mounted (init's `init: root ...` console line, read from
//! /proc/self/mountinfo in the guest), and powers off through the agent.
//!
//! A container also runs from the erofs image, its helpers from the agent's own binary on
//! the read-only root.
//!
//! The boots of one filesystem run in sequence (two tests in parallel at most, which two
//! cores under TCG take well).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::{self, GuestArtifacts};
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Attachment, ImageBoot, Vm, VmConfig};
use serde_json::Value;

const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);

/// The `init: root ...` line's fields.
#[derive(Debug)]
struct RootLine {
    fstype: String,
    device: String,
    options: Vec<String>,
}

fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()?
    } else {
        rest.split(' ').next()?
    };
    Some(value.to_string())
}

fn root_line(console: &str) -> Result<RootLine> {
    let line = console
        .lines()
        .find(|l| l.starts_with("init: root "))
        .context("init did not log its root mount (`init: root ...`)")?;
    Ok(RootLine {
        fstype: field(line, "fstype").context("no fstype")?,
        device: field(line, "device").context("no device")?,
        options: field(line, "options")
            .context("no options")?
            .split(',')
            .map(str::to_string)
            .collect(),
    })
}

fn manifest(image: &Path) -> Result<Value> {
    let path = PathBuf::from(format!("{}.manifest.json", image.display()));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} (run `just image`)", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn manifest_cmdline(m: &Value, attachment: Attachment) -> Result<String> {
    m["attach"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["attachment"] == attachment.name()))
        .and_then(|e| e["cmdline"].as_str())
        .map(str::to_string)
        .with_context(|| format!("no {attachment} entry in the manifest"))
}

/// Boots `boot`, checks agent and root mount, powers off. Returns boot-to-agent-ready.
async fn boot_once(kernel: &Path, boot: ImageBoot, expect_dax: bool) -> Result<Duration> {
    let attachment = boot.attachment;
    let fstype = boot.fstype.name();
    let config = VmConfig::new(GuestArtifacts {
        kernel: kernel.to_path_buf(),
        initrd: PathBuf::new(),
    })
    .with_image(boot);
    let mut vm = Vm::boot(&config)?;
    let (client, ready) = vm
        .wait_for_agent(BOOT_DEADLINE)
        .await
        .with_context(|| format!("{fstype} on {attachment}"))?;
    client.check().await.context("Health.Check")?;
    let root = root_line(&vm.console())?;
    eprintln!("{fstype} on {attachment}: agent ready in {ready:?}, root {root:?}");
    ensure!(root.fstype == fstype, "{attachment}: {root:?}");
    ensure!(
        root.options.iter().any(|o| o == "ro"),
        "{attachment}: root not read-only: {root:?}"
    );
    let dax = root.options.iter().any(|o| o == "dax=always" || o == "dax");
    ensure!(
        dax == expect_dax,
        "{fstype} on {attachment}: DAX {} expected, the guest reports {root:?}",
        if expect_dax { "" } else { "not" }
    );
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    ensure!(
        vm.console().contains("init: powering off"),
        "no orderly power-off"
    );
    vm.finish();
    Ok(ready)
}

async fn boots_three_ways(fstype: &str) -> Result<()> {
    let kernel = artifacts::kernel()?;
    let image = artifacts::image(fstype)?;
    for attachment in Attachment::ALL {
        let boot = ImageBoot::new(image.clone(), fstype, attachment)?;
        let dax = boot.dax();
        boot_once(&kernel, boot, dax).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ext4_image_boots_from_nvdimm_and_virtio_pmem_with_dax_and_from_virtio_blk() -> Result<()> {
    boots_three_ways("ext4").await
}

#[tokio::test(flavor = "multi_thread")]
async fn erofs_image_boots_from_nvdimm_and_virtio_pmem_with_dax_and_from_virtio_blk() -> Result<()>
{
    boots_three_ways("erofs").await
}

/// A container runs in a guest booted from the erofs image on an NVDIMM (Kata's default
/// layout), and the agent runs its helpers from its own binary there: the root is
/// read-only, so it needs neither a memfd copy nor a bind mount (`self_exe`).
#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_from_the_erofs_image_its_helpers_from_the_read_only_root() -> Result<()> {
    let kernel = artifacts::kernel()?;
    let boot = ImageBoot::new(artifacts::image("erofs")?, "erofs", Attachment::Nvdimm)?;
    let mut config = VmConfig::new(GuestArtifacts {
        kernel,
        initrd: PathBuf::new(),
    })
    .with_image(boot);
    // The agent says at debug level which way its helpers' binary is kept unwritable.
    config.extra_cmdline.push("agent.log=debug".into());
    let guest = SandboxGuest::boot(config).await?;
    let run = guest
        .run_container("echo", &ContainerSpec::new(["echo", "from the image"]))
        .await?;
    let console = guest.vm().console();
    ensure!(
        run.status == 0 && run.stdout.text() == "from the image\n",
        "the container exited {} with {:?}; console:\n{console}",
        run.status,
        run.stdout.text()
    );
    ensure!(
        console.contains("sealing=ReadOnlyMount"),
        "the helpers did not run from the read-only root; console:\n{console}"
    );
    guest.power_off().await?;
    Ok(())
}

/// A dm-verity image (`hull-image image --verity`): the kernel checks every block it
/// reads against the hash tree appended to the filesystem; the root is `/dev/dm-0`,
/// without DAX (dm-verity has none).
#[tokio::test(flavor = "multi_thread")]
async fn verity_image_boots_through_dm_verity() -> Result<()> {
    let kernel = artifacts::kernel()?;
    let image = artifacts::workspace_root().join("build/rootfs.ext4-verity.img");
    let m = manifest(&image)?;
    let root_hash = m["image"]["verity"]["root_hash"]
        .as_str()
        .context("no verity root hash in the manifest")?;
    for attachment in [Attachment::VirtioBlk, Attachment::Nvdimm] {
        let cmdline = manifest_cmdline(&m, attachment)?;
        if !cmdline.contains(root_hash) || !cmdline.contains("root=/dev/dm-0") {
            bail!("{attachment}: not a verity command line: {cmdline}");
        }
        let mut boot = ImageBoot::new(image.clone(), "ext4", attachment)?;
        boot.root_override = Some(cmdline);
        boot_once(&kernel, boot, false).await?;
    }
    Ok(())
}

#[test]
fn root_line_parsing() -> Result<()> {
    let console = "noise\ninit: root fstype=ext4 source=/dev/root device=259:1 \
                   options=\"ro,relatime,dax=always\" level=info\nmore\n";
    let r = root_line(console)?;
    assert_eq!(r.fstype, "ext4");
    assert_eq!(r.device, "259:1");
    assert_eq!(r.options, ["ro", "relatime", "dax=always"]);
    let plain =
        "init: root fstype=erofs source=/dev/root device=254:1 options=ro,relatime level=info";
    assert_eq!(root_line(plain)?.options, ["ro", "relatime"]);
    assert!(root_line("init: starting").is_err());
    Ok(())
}
