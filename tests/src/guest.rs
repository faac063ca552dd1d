//! A guest ready for containers: booted with a virtio-fs share (tag [`SHARED_FS_TAG`]) of
//! a fresh host directory, its agent serving, and `CreateSandbox` done with Kata's
//! storage for that share, so container bundles laid out in the share
//! ([`crate::bundle`]) are in the guest at [`GUEST_SHARED_DIR`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hull_protocols::agent::{CreateSandboxRequest, Storage};
use hull_protocols::client::AgentClient;
use tempfile::TempDir;

use crate::bundle::{ContainerSpec, GUEST_SHARED_DIR, SHARED_FS_TAG, busybox_rootfs};
use crate::container::{Container, Run};
use crate::vm::{VirtioFsShare, Vm, VmConfig};

/// Under TCG a boot takes a second or two; leave room for a loaded CI machine.
pub const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// From DestroySandbox's answer to QEMU's exit.
pub const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);

/// Kata's storage for the sandbox's shared directory: driver `virtio-fs`, source the tag,
/// fstype `virtiofs`, mounted at [`GUEST_SHARED_DIR`].
pub fn shared_fs_storage(tag: &str) -> Storage {
    Storage {
        driver: "virtio-fs".into(),
        source: tag.into(),
        fstype: "virtiofs".into(),
        mount_point: format!("{GUEST_SHARED_DIR}/"),
        ..Default::default()
    }
}

/// A `CreateSandboxRequest` with the shared directory's storage.
pub fn sandbox_request(sandbox_id: &str, hostname: &str) -> CreateSandboxRequest {
    CreateSandboxRequest {
        sandbox_id: sandbox_id.into(),
        hostname: hostname.into(),
        storages: vec![shared_fs_storage(SHARED_FS_TAG)],
        ..Default::default()
    }
}

/// A booted guest with its sandbox created. Dropping it kills the VM (printing its logs
/// unless [`SandboxGuest::power_off`] ended it cleanly).
pub struct SandboxGuest {
    // Dropped first: the VM (and its virtiofsd) before the shared directory.
    vm: Vm,
    /// The client that saw the agent's first answer, for the test's calls.
    pub client: AgentClient,
    /// From QEMU's start to the agent's first answer.
    pub agent_ready: Duration,
    /// How long `CreateSandbox` took.
    pub create_sandbox: Duration,
    share: TempDir,
}

impl SandboxGuest {
    /// Boots `config` plus the shared directory, waits for the agent and creates the
    /// sandbox (hostname `hull`).
    pub async fn boot(config: VmConfig) -> Result<Self> {
        let mut guest = Self::boot_without_sandbox(config).await?;
        let asked = Instant::now();
        guest
            .client
            .create_sandbox(&sandbox_request("hull-sandbox", "hull"))
            .await
            .context("CreateSandbox with the shared directory")?;
        guest.create_sandbox = asked.elapsed();
        Ok(guest)
    }

    /// Boots `config` plus the shared directory and waits for the agent; the sandbox is
    /// left for the caller to create (see [`sandbox_request`]).
    pub async fn boot_without_sandbox(mut config: VmConfig) -> Result<Self> {
        let share = tempfile::Builder::new()
            .prefix("hull-share-")
            .tempdir()
            .context("creating the shared directory")?;
        config.virtio_fs.push(VirtioFsShare {
            tag: SHARED_FS_TAG.into(),
            dir: share.path().to_path_buf(),
        });
        let mut vm = Vm::boot(&config)?;
        let (client, agent_ready) = vm.wait_for_agent(BOOT_DEADLINE).await?;
        Ok(Self {
            vm,
            client,
            agent_ready,
            create_sandbox: Duration::ZERO,
            share,
        })
    }

    /// The host side of the shared directory.
    pub fn share(&self) -> &Path {
        self.share.path()
    }

    /// Lays out container `id`'s busybox rootfs in the share.
    pub fn busybox_rootfs(&self, id: &str) -> Result<PathBuf> {
        busybox_rootfs(self.share(), id)
    }

    /// Lays out `id`'s busybox rootfs and runs `spec` in it to the end (create, start,
    /// read its output, wait, remove).
    pub async fn run_container(&self, id: &str, spec: &ContainerSpec) -> Result<Run> {
        self.busybox_rootfs(id)?;
        Container::run(&self.client, id, spec.to_proto(id)?).await
    }

    /// Lays out `id`'s busybox rootfs, creates and starts `spec` in it.
    pub async fn start_container(&self, id: &str, spec: &ContainerSpec) -> Result<Container> {
        self.busybox_rootfs(id)?;
        let container = Container::create(&self.client, id, spec.to_proto(id)?)
            .await
            .with_context(|| format!("CreateContainer {id}"))?;
        container
            .start()
            .await
            .with_context(|| format!("StartContainer {id}"))?;
        Ok(container)
    }

    /// The VM, for its console and addresses.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The VM, for QMP ([`Vm::qmp`]) and fault injection ([`Vm::kill_virtiofsd`]).
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }

    /// Waits for the VM to power off after someone else asked for it (`DestroySandbox`
    /// through another client).
    pub fn wait_powered_off(mut self) -> Result<()> {
        let status = self.vm.wait_for_exit(POWER_OFF_DEADLINE)?;
        anyhow::ensure!(status.success(), "the VMM exited with {status}");
        let Self { vm, share, .. } = self;
        vm.finish();
        drop(share);
        Ok(())
    }

    /// `DestroySandbox`, then waits for the VM to power off; returns the time between.
    pub async fn power_off(mut self) -> Result<Duration> {
        let took = self
            .vm
            .power_off_through_agent(&self.client, POWER_OFF_DEADLINE)
            .await?;
        let Self { vm, share, .. } = self;
        vm.finish();
        drop(share);
        Ok(took)
    }
}
