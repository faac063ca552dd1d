//! The walking skeleton, in a real VM: boot a hull guest, talk to its agent over hybrid
//! vsock, and power it off through the agent API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::vm::{Vm, VmConfig};
use hull_protocols::health::health_check_response::ServingStatus;

/// Under TCG a boot takes about a second; leave room for a loaded CI machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// From DestroySandbox's answer to QEMU's exit: agent exit, init shutdown, ACPI power-off.
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn guest_boots_answers_the_agent_api_and_powers_off() -> Result<()> {
    let config = VmConfig::new(GuestArtifacts::locate()?);
    let mut vm = Vm::boot(&config)?;
    let (client, ready) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    eprintln!("agent ready {ready:?} after QEMU start ({})", vm.accel());

    let health = client.check().await.context("Health.Check")?;
    ensure!(
        health.status.enum_value() == Ok(ServingStatus::SERVING),
        "not serving: {health:?}"
    );
    let version = client.version().await.context("Health.Version")?;
    ensure!(
        version.agent_version == env!("CARGO_PKG_VERSION"),
        "{version:?}"
    );

    // Values only the guest can give: hull-init is PID 1 there, and the guest kernel
    // (256 MiB of RAM, x86_64) has 128 MiB memory blocks.
    let details = client.guest_details().await.context("GetGuestDetails")?;
    let agent = details
        .agent_details
        .clone()
        .into_option()
        .context("no agent details")?;
    ensure!(
        agent.init_daemon,
        "the agent does not see hull-init as its parent: {details:?}"
    );
    ensure!(details.mem_block_size_bytes == 128 << 20, "{details:?}");
    ensure!(
        vm.console().contains("init: agent started"),
        "init did not log the agent start"
    );

    // A method hull does not implement (nor does Kata's agent) answers UNIMPLEMENTED
    // with its name.
    let err = client
        .resize_volume("/run/volume", 1 << 30)
        .await
        .expect_err("ResizeVolume is not implemented");
    ensure!(
        err.is_unimplemented() && err.to_string().contains("ResizeVolume"),
        "unexpected answer: {err}"
    );

    let took = vm
        .power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    eprintln!("QEMU exited cleanly {took:?} after DestroySandbox");
    ensure!(
        vm.console().contains("init: powering off"),
        "no orderly power-off on the console"
    );
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_logs_reach_the_host_through_the_log_vport() -> Result<()> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config
        .extra_cmdline
        .extend(["agent.log_vport=1025".into(), "agent.log=debug".into()]);
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;

    let mut reader = BufReader::new(vm.connect_guest_port(1025).await?);
    let mut line = String::new();

    client.guest_details().await.context("GetGuestDetails")?;
    let mut seen = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("log stream ended; lines so far:\n{}", seen.join(""));
        }
        seen.push(line.clone());
        if line.contains("agent serving") {
            break;
        }
    }
    ensure!(
        !vm.console().contains("agent serving"),
        "logs went to the console too"
    );
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}
