//! The full Linux boot under vmm-lite (`./run test-kvm`): from the initrd, the DAX image on
//! virtio-pmem and the image on virtio-blk, the agent answers over vmm-lite's hybrid vsock,
//! a container runs in the virtio-fs share, the guest powers off (init reboots through the
//! i8042) and vmm-lite exits 0.
//!
//! It needs hardware KVM: under PVM (this project's build machine) supervisor code is
//! emulated instruction by instruction and Linux does not get past early boot in useful
//! time. So it is `#[ignore]`d in `cargo test` (`./run test` prints why) and fails at once,
//! naming the reason, where hardware KVM is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use hull_e2e::accel::{Accel, probe_host};
use hull_e2e::artifacts::{self, GuestArtifacts};
use hull_e2e::bundle::{ContainerSpec, kernel_release};
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Attachment, ImageBoot, VmConfig, Vmm};

fn require_hardware_kvm() -> Result<()> {
    match probe_host(Path::new("/sys/module"), Path::new("/dev/kvm")) {
        Accel::Kvm => Ok(()),
        Accel::Tcg { reason } => bail!(
            "the full vmm-lite boot test needs hardware KVM, and this host has none: {reason}"
        ),
    }
}

async fn boot_run_power_off(what: &str, config: VmConfig, release: &str) -> Result<()> {
    let started = Instant::now();
    let guest = SandboxGuest::boot(config).await?;
    eprintln!("{what}: agent ready in {:?}", guest.agent_ready);
    guest.busybox_rootfs("uname")?;
    let spec = ContainerSpec::new(["uname", "-r"]).to_proto("uname")?;
    let run = Container::run(&guest.client, "uname", spec).await?;
    ensure!(run.status == 0, "{what}: uname exited {}", run.status);
    ensure!(
        run.stdout.text().trim() == release,
        "{what}: the container reports {:?}, the guest kernel is {release:?}",
        run.stdout.text()
    );
    ensure!(
        guest.vm().console().contains("init: agent started"),
        "{what}: init did not log the agent start"
    );
    guest.power_off().await?;
    eprintln!("{what}: whole run {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs hardware KVM: run `./run test-kvm`"]
async fn vmm_lite_boots_initrd_pmem_and_blk_runs_a_container_and_exits_zero() -> Result<()> {
    require_hardware_kvm()?;
    let artifacts = GuestArtifacts::locate()?;
    let release = kernel_release(&artifacts.kernel)?;
    let lite = |config: VmConfig| VmConfig {
        vmm: Vmm::VmmLite,
        accel: Accel::Kvm,
        ..config
    };
    boot_run_power_off("initrd", lite(VmConfig::new(artifacts.clone())), &release).await?;
    let image = artifacts::image("ext4")?;
    for attachment in [Attachment::VirtioPmem, Attachment::VirtioBlk] {
        let boot = ImageBoot::new(image.clone(), "ext4", attachment)?;
        let config = lite(VmConfig::new(artifacts.clone()).with_image(boot));
        boot_run_power_off(attachment.name(), config, &release).await?;
    }
    Ok(())
}
