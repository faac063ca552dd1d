//! The debug console: a shell on guest vsock port 1026, served only when the image was
//! built with it (`hull-image image --debug-tools`, `just image-debug`) *and* the kernel
//! command line asks for it (`agent.debug_console`). Either alone leaves the port shut.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::{self, GuestArtifacts};
use hull_e2e::vm::{Attachment, ImageBoot, Vm, VmConfig};

const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);
const DEBUG_CONSOLE_PORT: u32 = 1026;

/// Boots `image` from virtio-blk with `extra` on the command line; returns the VM and a
/// client once the agent answers.
async fn boot(
    image: std::path::PathBuf,
    extra: &[&str],
) -> Result<(Vm, hull_protocols::client::AgentClient)> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?).with_image(ImageBoot::new(
        image,
        "ext4",
        Attachment::VirtioBlk,
    )?);
    config
        .extra_cmdline
        .extend(extra.iter().map(|s| s.to_string()));
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    Ok((vm, client))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_debug_image_asked_for_it_serves_a_shell() -> Result<()> {
    let (mut vm, client) = boot(artifacts::debug_image()?, &["agent.debug_console"]).await?;
    // The agent has served ttRPC since before it answered; the console task starts with it.
    let mut shell = vm.connect_guest_port(DEBUG_CONSOLE_PORT).await?;
    shell.write_all(b"echo hull-$((6*7)) $(cat /proc/1/comm); exit\n")?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("hull-42 init") {
        let n = shell.read(&mut buf).context("reading the debug shell")?;
        if n == 0 {
            bail!("the shell ended early: {}", String::from_utf8_lossy(&seen));
        }
        seen.extend_from_slice(&buf[..n]);
    }
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_alone_cannot_open_a_shell() -> Result<()> {
    // The production image has no debug-console marker: the option is refused.
    let (mut vm, client) = boot(artifacts::image("ext4")?, &["agent.debug_console"]).await?;
    ensure!(
        vm.connect_guest_port(DEBUG_CONSOLE_PORT).await.is_err(),
        "a shell answered on a production image"
    );
    ensure!(
        vm.console().contains("agent.debug_console ignored"),
        "the agent did not say why it refused"
    );
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();

    // The debug image without the option: nothing listens either.
    let (mut vm, client) = boot(artifacts::debug_image()?, &[]).await?;
    ensure!(
        vm.connect_guest_port(DEBUG_CONSOLE_PORT).await.is_err(),
        "a shell answered without agent.debug_console"
    );
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}
